//! Which registry images registry-up knows how to run with its own config. The pod gives the registry
//! container the arguments `serve PATH` and keeps the image's ENTRYPOINT; that runs our config only on
//! the two layouts of the official image, so any other image is refused before anything is written.

use crate::error::{Error, Result};

/// ENTRYPOINT and CMD of an image, as `podman image inspect` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ImageConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

/// The official image's layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// distribution 3.x: `ENTRYPOINT ["registry"]`, `CMD ["serve", "/etc/distribution/config.yml"]`.
    V3,
    /// distribution 2.x: `ENTRYPOINT ["/entrypoint.sh"]`, `CMD ["/etc/docker/registry/config.yml"]`; the
    /// script runs `registry serve PATH` for the arguments `serve PATH`.
    V2,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::V3 => "distribution 3.x layout",
            Layout::V2 => "distribution 2.x layout",
        }
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The layout of `image`, or why registry-up cannot run it with its config.
pub fn layout(image: &str, config: &ImageConfig) -> Result<Layout> {
    let entrypoint = config.entrypoint.clone().unwrap_or_default();
    let cmd = config.cmd.clone().unwrap_or_default();
    let names_config = |args: &[String]| args.last().is_some_and(|a| a.ends_with(".yml") || a.ends_with(".yaml"));
    match entrypoint.as_slice() {
        [one] if basename(one) == "registry" => Ok(Layout::V3),
        [one] if basename(one) == "entrypoint.sh" && names_config(&cmd) => Ok(Layout::V2),
        _ => Err(Error::usage(format!(
            "The image {image} is not a distribution registry that registry-up knows how to run (ENTRYPOINT {}, \
             CMD {}): give --registry-image the official registry image ({}), or one laid out like it or like the \
             older 2.x images.",
            shown(&config.entrypoint),
            shown(&config.cmd),
            crate::settings::DEFAULT_REGISTRY_IMAGE
        ))),
    }
}

/// Refuses an image that sets REGISTRY_* variables: distribution reads them over its config file, so
/// such an image would run registry-up's file (fingerprint and all) with, say, its storage elsewhere.
pub fn no_overrides(image: &str, config: &ImageConfig) -> Result<()> {
    let names = crate::render::foreign_registry_env(config.env.as_deref().unwrap_or_default());
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "The image {image} sets {} in its environment, which the registry reads over the config file registry-up \
         writes (its storage, auth or listener could then be other than what up sets up and verify checks): build \
         the image without {}, or give --registry-image another one. Nothing was changed.",
        names.join(", "),
        if names.len() == 1 { "it" } else { "them" }
    )))
}

fn shown(list: &Option<Vec<String>>) -> String {
    match list {
        None => "none".into(),
        Some(items) => serde_json::to_string(items).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let list = |l: &[&str]| (!l.is_empty()).then(|| l.iter().map(|s| s.to_string()).collect());
        ImageConfig {
            entrypoint: list(entrypoint),
            cmd: list(cmd),
            env: None,
        }
    }

    #[test]
    fn the_official_layouts_are_known() {
        let v3 = config(&["registry"], &["serve", "/etc/distribution/config.yml"]);
        assert_eq!(layout("r", &v3).unwrap(), Layout::V3);
        assert_eq!(layout("r", &config(&["/bin/registry"], &[])).unwrap(), Layout::V3);
        let v2 = config(&["/entrypoint.sh"], &["/etc/docker/registry/config.yml"]);
        assert_eq!(layout("r", &v2).unwrap(), Layout::V2);
    }

    #[test]
    fn other_images_are_refused_naming_the_image() {
        for bad in [
            config(&["/usr/sbin/nginx", "-g", "daemon off;"], &[]),
            config(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]),
            config(&["/entrypoint.sh"], &["nginx"]),
            config(&[], &["/bin/sh"]),
            config(&["registry", "serve", "/etc/x.yml"], &[]),
            ImageConfig::default(),
        ] {
            let e = layout("example/nginx:1", &bad).unwrap_err();
            assert_eq!(e.status, crate::error::ExitStatus::Usage);
            assert!(e.message.contains("example/nginx:1"), "{}", e.message);
            assert!(e.message.contains("--registry-image"), "{}", e.message);
        }
    }

    #[test]
    fn an_image_that_overrides_the_config_file_is_refused_naming_the_variables() {
        let mut c = config(&["registry"], &[]);
        c.env = Some(vec!["PATH=/bin".into(), "OTEL_TRACES_EXPORTER=none".into()]);
        assert!(no_overrides("r", &c).is_ok());
        c.env = Some(vec![
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/tmp".into(),
            "PATH=/bin".into(),
            "REGISTRY_HTTP_ADDR=:5000".into(),
        ]);
        let e = no_overrides("example/registry:evil", &c).unwrap_err();
        assert_eq!(e.status, crate::error::ExitStatus::Usage);
        assert!(e.message.contains("example/registry:evil"), "{}", e.message);
        assert!(
            e.message
                .contains("REGISTRY_HTTP_ADDR, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("/tmp"), "values are not echoed: {}", e.message);
    }

    #[test]
    fn podman_inspect_config_deserialises() {
        let json = r#"{"Entrypoint":["registry"],"Cmd":["serve","/etc/distribution/config.yml"],"Env":["A=b"]}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        let mut want = config(&["registry"], &["serve", "/etc/distribution/config.yml"]);
        want.env = Some(vec!["A=b".into()]);
        assert_eq!(c, want);
        let c: ImageConfig = serde_json::from_str(r#"{"Entrypoint":null}"#).unwrap();
        assert_eq!(c, ImageConfig::default());
    }
}
