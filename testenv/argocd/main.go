// Command argocd-mini is Argo CD's application-controller and repo-server in one binary, the
// two components the tests run against the kwok cluster (no API server, UI or Dex).
//
// The component comes from $ARGOCD_BINARY_NAME, else the base name of argv[0], else the first
// argument, like upstream's cmd/main.go. Upstream's grpc.DisableSRVLookups() is deliberately
// not called: without the grpclb balancer linked in it panics at start-up, and SRV lookups
// are already off.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() { klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig())) }

func pick(name string) func() *cobra.Command {
	switch name {
	case common.CommandApplicationController:
		return appcontroller.NewCommand
	case common.CommandRepoServer:
		return reposerver.NewCommand
	}
	return nil
}

func main() {
	name := os.Getenv("ARGOCD_BINARY_NAME")
	if name == "" {
		name = filepath.Base(os.Args[0])
	}
	newCmd := pick(name)
	if newCmd == nil && len(os.Args) > 1 {
		if newCmd = pick(os.Args[1]); newCmd != nil {
			os.Args = append(os.Args[:1], os.Args[2:]...)
		}
	}
	if newCmd == nil {
		fmt.Fprintf(os.Stderr, "usage: %s %s|%s [flags]\n", os.Args[0],
			common.CommandApplicationController, common.CommandRepoServer)
		os.Exit(2)
	}
	if err := newCmd().Execute(); err != nil {
		os.Exit(1)
	}
}
