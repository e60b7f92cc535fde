//! deploy/compose.yaml's containers as processes here: each service's
//! command, environment and mounted files, mapped (see `mapping`).

use std::net::SocketAddr;

use heist_e2e::{processes::free_addr, repo_root};
use heist_engines::RedisServer;

use super::{
    Container, command_with_mounted_files,
    compose::{Compose, Mount, image_env},
    deploy_dir, heist_services,
    mapping::{Mapping, Paths, listen_ports},
    read,
};

/// Everything the deployment's containers share on this machine.
pub(super) struct Deployment {
    /// The compose file.
    pub(super) compose: Compose,
    /// Its addresses here.
    pub(super) mapping: Mapping,
    root: tempfile::TempDir,
    image_env: Vec<(String, String)>,
}

impl Deployment {
    /// The compose file with its addresses mapped onto `postgres` and `redis`.
    pub(super) fn new(postgres_url: &str, redis: &RedisServer, jaeger: SocketAddr) -> Self {
        let compose = super::compose();
        let mut mapping = Mapping::default();
        for (name, service) in heist_services(&compose) {
            let text = command_with_mounted_files(service);
            for port in listen_ports(&text) {
                mapping.insert(name, port, free_addr());
            }
        }
        let postgres = &compose.services["postgres"].environment;
        let written = format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        );
        mapping.urls.insert(written, postgres_url.to_owned());
        let redis_command = &compose.services["redis"].command;
        let password = redis_command
            .iter()
            .position(|arg| arg == "--requirepass")
            .map(|at| redis_command[at + 1].clone())
            .expect("redis is started with --requirepass");
        mapping
            .urls
            .insert(format!("redis://:{password}@redis:6379/0"), redis.url());
        mapping.insert("jaeger", 4317, jaeger);
        Self {
            compose,
            mapping,
            root: tempfile::tempdir().unwrap(),
            image_env: image_env(&read(&repo_root().join("Dockerfile"))),
        }
    }

    /// Service `name` as a process would run it here: its directories made,
    /// its bind-mounted files copied with their addresses mapped.
    pub(super) fn container(&self, name: &str) -> Container {
        let service = &self.compose.services[name];
        let dir = self.root.path().join("containers").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Paths::default();
        paths.insert("/var/lib/heist", &dir); // the image's WORKDIR, its own
        paths.insert(
            "/usr/share/heist/documents",
            &repo_root().join("services/tools/documents"),
        );
        for mount in service.volumes.iter().map(|entry| Mount::parse(entry)) {
            let here = if mount.is_bind() {
                let copy = self
                    .root
                    .path()
                    .join("binds")
                    .join(name)
                    .join(mount.source.trim_start_matches("./"));
                std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
                let text = read(&deploy_dir().join(&mount.source));
                std::fs::write(&copy, self.mapping.addresses(&text, name)).unwrap();
                copy
            } else {
                assert!(
                    self.compose.volumes.contains_key(&mount.source),
                    "{name} mounts {:?}, which is not a named volume",
                    mount.source
                );
                let volume = self.root.path().join("volumes").join(&mount.source);
                std::fs::create_dir_all(&volume).unwrap();
                volume
            };
            paths.insert(&mount.target, &here);
        }
        let map = |text: &str| paths.rewrite(&self.mapping.addresses(text, name));
        let mut env: Vec<(String, String)> = self.image_env.clone();
        env.retain(|(key, _)| !service.environment.contains_key(key));
        env.extend(
            service
                .environment
                .iter()
                .map(|(key, value)| (key.clone(), map(value))),
        );
        let health = service.healthcheck.as_ref().map(|check| {
            assert_eq!(
                check.test[0], "CMD",
                "{name}'s health check is an exec form"
            );
            check.test[1..].iter().map(|arg| map(arg)).collect()
        });
        Container {
            name: name.to_owned(),
            args: service.command.iter().map(|arg| map(arg)).collect(),
            env: env
                .into_iter()
                .map(|(key, value)| (key, paths.rewrite(&value)))
                .collect(),
            health,
            dir,
        }
    }
}
