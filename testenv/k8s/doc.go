// Package k8sbuild pins the Kubernetes release whose control-plane binaries the tests run.
// Nothing imports it: scripts/build-testenv.sh builds the cmd packages listed in go.mod.
package k8sbuild
