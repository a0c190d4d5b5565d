// Package etcdbuild pins the etcd release the test control plane stores its state in.
// Kept apart from testenv/k8s so etcd builds with its own tested dependency set.
package etcdbuild
