"""A real kube-apiserver + etcd + kube-controller-manager for the tests (kubebuilder's envtest)."""
