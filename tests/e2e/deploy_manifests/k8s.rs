//! deploy/k8s as `kubectl kustomize` renders it, read back into containers:
//! each Deployment and Job's container with its command and args, its env
//! (literal values and Secret keys), and its volumes (ConfigMap and Secret
//! files written with the volume's mode, emptyDir a fresh directory); the
//! readiness probe's gRPC port becomes the health check `heist-probe
//! 127.0.0.1:PORT`. One process per Deployment: `replicas` is not
//! reproduced (the scale-out tests run replicas).

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use base64::Engine as _;
use serde_norway::Value;

use super::mapping::{Mapping, Paths, listen_ports};

/// The rendered objects of one kustomization.
pub(super) struct Rendered {
    objects: Vec<Value>,
}

/// A workload's kind, name and pod spec.
pub(super) struct Workload<'a> {
    /// `Deployment` or `Job`.
    pub(super) kind: &'a str,
    /// Its name (a Deployment's is also its Service's, so its host name).
    pub(super) name: &'a str,
    spec: &'a Value,
}

impl Rendered {
    /// Renders `variant` (e.g. `overlays/tls`) of a copy of deploy/k8s made
    /// in `dir`, with development Secrets from scripts/deploy_secrets.sh.
    pub(super) fn render(repo: &Path, dir: &Path, variant: &str) -> Self {
        let k8s = dir.join("k8s");
        let copied = Command::new("cp")
            .arg("-r")
            .arg(repo.join("deploy/k8s"))
            .arg(&k8s)
            .status()
            .unwrap();
        assert!(copied.success());
        for generated in ["base/secrets", "overlays/tls/certs"] {
            let _ = std::fs::remove_dir_all(k8s.join(generated));
        }
        let secrets = Command::new(repo.join("scripts/deploy_secrets.sh"))
            .arg("--k8s-dir")
            .arg(&k8s)
            .output()
            .unwrap();
        assert!(
            secrets.status.success(),
            "deploy_secrets.sh: {}",
            String::from_utf8_lossy(&secrets.stderr)
        );
        let rendered = Command::new("kubectl")
            .arg("kustomize")
            .arg(k8s.join(variant))
            .output()
            .unwrap_or_else(|error| {
                panic!("kubectl: {error} (scripts/install_deploy_tools.sh installs it)")
            });
        assert!(
            rendered.status.success(),
            "kubectl kustomize {variant}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let text = String::from_utf8(rendered.stdout).unwrap();
        let objects = text
            .split("\n---\n")
            .map(|doc| serde_norway::from_str(doc).unwrap())
            .collect();
        Self { objects }
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
    }

    /// The Deployments, then the Jobs.
    pub(super) fn workloads(&self) -> Vec<Workload<'_>> {
        let mut workloads: Vec<Workload<'_>> = ["Deployment", "Job"]
            .iter()
            .flat_map(|kind| {
                self.objects
                    .iter()
                    .filter(move |object| object["kind"] == *kind)
                    .map(move |object| Workload {
                        kind,
                        name: object["metadata"]["name"].as_str().unwrap(),
                        spec: &object["spec"]["template"]["spec"],
                    })
            })
            .collect();
        workloads.sort_by_key(|workload| workload.kind != "Deployment");
        workloads
    }

    /// The engine URLs the Secrets hold (`postgres://`, `redis://`), each
    /// mapped to `postgres` or `redis`.
    pub(super) fn engine_urls(&self, postgres: &str, redis: &str) -> BTreeMap<String, String> {
        let mut urls = BTreeMap::new();
        for secret in self
            .objects
            .iter()
            .filter(|object| object["kind"] == "Secret")
        {
            for (_, value) in entries(&secret["data"]) {
                let decoded = decode(value);
                let text = String::from_utf8_lossy(&decoded).trim().to_owned();
                if text.starts_with("postgres://") {
                    urls.insert(text, postgres.to_owned());
                } else if text.starts_with("redis://") {
                    urls.insert(text, redis.to_owned());
                }
            }
        }
        urls
    }

    /// A Secret's key, decoded.
    pub(super) fn secret(&self, name: &str, key: &str) -> Vec<u8> {
        let encoded = &self.named("Secret", name)["data"][key];
        assert!(encoded.is_string(), "Secret {name} has no key {key}");
        decode(encoded)
    }

    /// The text of every file a workload mounts from a ConfigMap, and its
    /// args: where its listen addresses are written.
    pub(super) fn listen_ports(&self, workload: &Workload<'_>) -> Vec<u16> {
        let container = &workload.spec["containers"][0];
        let mut text = args(container).join(" ");
        for volume in sequence(&workload.spec["volumes"]) {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                for (_, value) in entries(&self.named("ConfigMap", name)["data"]) {
                    text.push(' ');
                    text.push_str(value.as_str().unwrap());
                }
            }
        }
        listen_ports(&text)
    }

    /// `workload`'s container as a process here, its files under `root`.
    pub(super) fn container(
        &self,
        workload: &Workload<'_>,
        mapping: &Mapping,
        image_env: &[(String, String)],
        root: &Path,
    ) -> super::Container {
        let name = workload.name;
        let spec = &workload.spec["containers"][0];
        let dir = root.join("containers").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Paths::default();
        paths.insert(
            "/usr/share/heist/documents",
            &super::repo_root().join("services/tools/documents"),
        );
        let volumes: BTreeMap<&str, &Value> = sequence(&workload.spec["volumes"])
            .iter()
            .map(|volume| (volume["name"].as_str().unwrap(), volume))
            .collect();
        for mount in sequence(&spec["volumeMounts"]) {
            let volume = volumes[mount["name"].as_str().unwrap()];
            let target = mount["mountPath"].as_str().unwrap();
            let here = root
                .join("volumes")
                .join(name)
                .join(volume["name"].as_str().unwrap());
            std::fs::create_dir_all(&here).unwrap();
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                for (key, value) in entries(&self.named("ConfigMap", config_map)["data"]) {
                    let text = mapping.addresses(value.as_str().unwrap(), name);
                    write(&here.join(key.as_str().unwrap()), text.as_bytes(), 0o644);
                }
            } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
                for (key, _) in entries(&self.named("Secret", secret)["data"]) {
                    let key = key.as_str().unwrap();
                    write(&here.join(key), &self.secret(secret, key), mode as u32);
                }
            } else {
                assert!(
                    volume.get("emptyDir").is_some(),
                    "{name}'s volume {volume:?} is neither a ConfigMap, a Secret nor an emptyDir"
                );
            }
            paths.insert(target, &here);
        }
        let map = |text: &str| paths.rewrite(&mapping.addresses(text, name));
        let mut env: Vec<(String, String)> = Vec::new();
        for var in sequence(&spec["env"]) {
            let key = var["name"].as_str().unwrap().to_owned();
            let value = match var["value"].as_str() {
                Some(value) => value.to_owned(),
                None => {
                    let reference = &var["valueFrom"]["secretKeyRef"];
                    let secret = self.secret(
                        reference["name"].as_str().unwrap(),
                        reference["key"].as_str().unwrap(),
                    );
                    String::from_utf8(secret).unwrap().trim().to_owned()
                }
            };
            env.push((key, map(&value)));
        }
        let mut whole: Vec<(String, String)> = image_env
            .iter()
            .filter(|(key, _)| env.iter().all(|(set, _)| set != key))
            .map(|(key, value)| (key.clone(), paths.rewrite(value)))
            .collect();
        whole.extend(env);
        let health = spec["readinessProbe"]["grpc"]["port"]
            .as_u64()
            .map(|port| vec!["heist-probe".to_owned(), map(&format!("127.0.0.1:{port}"))]);
        super::Container {
            name: name.to_owned(),
            args: args(spec).iter().map(|arg| map(arg)).collect(),
            env: whole,
            health,
            dir,
        }
    }
}

/// A container's command and args, as one command line.
fn args(container: &Value) -> Vec<String> {
    sequence(&container["command"])
        .iter()
        .chain(sequence(&container["args"]))
        .map(|arg| arg.as_str().unwrap().to_owned())
        .collect()
}

/// A Secret's base64 value (kustomize wraps long ones over lines).
fn decode(value: &Value) -> Vec<u8> {
    let text: String = value
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn sequence(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

fn entries(value: &Value) -> Vec<(&Value, &Value)> {
    value
        .as_mapping()
        .map(|map| map.iter().collect())
        .unwrap_or_default()
}

fn write(path: &PathBuf, bytes: &[u8], mode: u32) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
