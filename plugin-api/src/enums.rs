//! Symbol names of the SysFlow enums.

/// `ContainerType` symbols without the `CT_` prefix, by ordinal.
pub const CONTAINER_TYPES: [&str; 10] =
    ["DOCKER", "LXC", "LIBVIRT_LXC", "MESOS", "RKT", "CUSTOM", "CRI", "CONTAINERD", "CRIO", "BPM"];

/// `K8sComponent` symbols, by ordinal.
pub const K8S_COMPONENTS: [&str; 10] = [
    "K8S_NODES",
    "K8S_NAMESPACES",
    "K8S_PODS",
    "K8S_REPLICATIONCONTROLLERS",
    "K8S_SERVICES",
    "K8S_EVENTS",
    "K8S_REPLICASETS",
    "K8S_DAEMONSETS",
    "K8S_DEPLOYMENTS",
    "K8S_UNKNOWN",
];

/// `K8sAction` symbols, by ordinal.
pub const K8S_ACTIONS: [&str; 6] = [
    "K8S_COMPONENT_ADDED",
    "K8S_COMPONENT_MODIFIED",
    "K8S_COMPONENT_DELETED",
    "K8S_COMPONENT_ERROR",
    "K8S_COMPONENT_NONEXISTENT",
    "K8S_COMPONENT_UNKNOWN",
];

/// Name of a container type ordinal (`""` when out of range).
pub fn container_type_name(ordinal: i32) -> &'static str {
    usize::try_from(ordinal).ok().and_then(|i| CONTAINER_TYPES.get(i)).copied().unwrap_or("")
}

/// Name of a `K8sComponent` ordinal (`""` when out of range).
pub fn k8s_component_name(ordinal: i32) -> &'static str {
    usize::try_from(ordinal).ok().and_then(|i| K8S_COMPONENTS.get(i)).copied().unwrap_or("")
}

/// Name of a `K8sAction` ordinal (`""` when out of range).
pub fn k8s_action_name(ordinal: i32) -> &'static str {
    usize::try_from(ordinal).ok().and_then(|i| K8S_ACTIONS.get(i)).copied().unwrap_or("")
}
