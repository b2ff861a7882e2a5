// Package deploy holds enrollq's deployment files: the Dockerfile, the
// Compose file, Kubernetes manifests (k8s/), systemd units (systemd/) and a
// crontab line. It has no code; its tests decode every Kubernetes manifest
// strictly into its API type and check the invariants the worker relies
// on, such as a termination grace period longer than --shutdown-timeout.
package deploy
