//! Prints the `EcsInstance` CustomResourceDefinition as YAML; `crds/ecsinstance.yaml` is its output.

use ecs_instance_controller::crd_yaml;

fn main() {
    print!("{}", crd_yaml());
}
