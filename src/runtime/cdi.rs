//! CDI (Container Device Interface): device names such as
//! `vendor.com/gpu=0` resolved against the JSON and YAML spec files in
//! `runtime.cdi_spec_dirs`, and the edits they describe (device nodes,
//! mounts, env, hooks, additional gids) applied to a container's OCI spec.
//!
//! Semantics follow the CDI spec and its Go reference library (what
//! containerd and CRI-O use): a later spec dir overrides an earlier one for
//! the same device, two files of the same dir defining it conflict; a spec
//! file that does not parse or validate is reported and left out, the rest
//! still resolve; a spec's top-level `containerEdits` apply once when any
//! of its devices is requested, before the devices' own edits; device node
//! type, major, minor and mode are read from the host node when the spec
//! leaves them out; env entries replace ones with the same name; mounts
//! replace ones at the same container path and the mount list is then
//! ordered parents first.
//!
//! Spec files are read at each CreateContainer that asks for CDI devices:
//! they are small, and drivers write them at any time (the Go library
//! watches the dirs with inotify to the same end).
//!
//! Owns no OS state; reading the spec dirs and stat'ing host device nodes
//! is all it does outside the process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

/// Bigger spec files are refused (a hostile or broken file must not make
/// the daemon allocate without bound).
const MAX_SPEC_BYTES: u64 = 4 << 20;

/// The OCI hooks a CDI spec may add to.
const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CdiError {
    #[error("CDI device {name:?} is not a fully-qualified name (vendor.com/class=name): {why}")]
    BadName { name: String, why: String },
    #[error(
        "CDI device {name:?} is not defined by any valid spec file in {dirs}; \
         install the device's CDI spec (or check the daemon log for spec files that were refused)"
    )]
    Unknown { name: String, dirs: String },
    #[error("CDI device {name:?} is defined by both {first} and {second}; remove one of them")]
    Conflict {
        name: String,
        first: String,
        second: String,
    },
    #[error("CDI device {name:?} (spec {file}): {why}")]
    Device {
        name: String,
        file: String,
        why: String,
    },
}

/// A spec file: `cdiVersion`, `kind`, `devices`, top-level `containerEdits`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFile {
    cdi_version: String,
    kind: String,
    #[serde(default)]
    devices: Vec<DeviceDef>,
    #[serde(default)]
    container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceDef {
    name: String,
    #[serde(default)]
    container_edits: ContainerEdits,
}

/// What a spec or device changes in the container's OCI spec.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<CdiMount>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default, rename = "additionalGids")]
    pub additional_gids: Vec<u32>,
    /// Edits crius cannot apply (`intelRdt`, `netDevices`: runtime-spec
    /// features libcontainer 0.7 lacks); a device using them is refused,
    /// never half-applied.
    #[serde(skip)]
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The edit fields crius does not implement, seen on parse so a device
/// using them is refused rather than applied in part.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnsupportedEdits {
    #[serde(default)]
    intel_rdt: Option<IgnoredAny>,
    #[serde(default)]
    net_devices: Option<Vec<IgnoredAny>>,
}

/// One device as loaded: its edits and those of its spec file.
#[derive(Debug, Clone)]
struct Loaded {
    file: PathBuf,
    /// Index of the spec file (its top-level edits apply once).
    spec: usize,
    edits: ContainerEdits,
}

/// The devices defined by the spec dirs, read now.
#[derive(Debug, Default)]
pub struct Registry {
    devices: BTreeMap<String, Loaded>,
    /// Devices defined by two files of the same (highest) dir.
    conflicts: BTreeMap<String, (PathBuf, PathBuf)>,
    specs: Vec<ContainerEdits>,
    dirs: Vec<PathBuf>,
    /// Files left out, with why (also logged at load).
    pub refused: Vec<(PathBuf, String)>,
}

/// A parsed `vendor.com/class=name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName<'a> {
    pub kind: &'a str,
    pub name: &'a str,
}

/// Splits and checks a fully-qualified device name.
pub fn parse_name(full: &str) -> Result<QualifiedName<'_>, CdiError> {
    let bad = |why: &str| CdiError::BadName {
        name: full.to_owned(),
        why: why.to_owned(),
    };
    let (kind, name) = full
        .split_once('=')
        .ok_or_else(|| bad("missing '=' before the device name"))?;
    check_kind(kind).map_err(|w| bad(&w))?;
    check_device_name(name).map_err(|w| bad(&w))?;
    Ok(QualifiedName { kind, name })
}

/// `vendor.com/class`: vendor a DNS-like name, class alphanumerics with
/// `-`, `_`, `.` (the CDI spec's rule).
fn check_kind(kind: &str) -> Result<(), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not vendor/class"))?;
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok_vendor = vendor.len() <= 253
        && vendor.starts_with(|c: char| c.is_ascii_alphabetic())
        && vendor.ends_with(alnum)
        && vendor.chars().all(|c| alnum(c) || c == '-' || c == '.');
    if !ok_vendor {
        return Err(format!("vendor {vendor:?} of kind {kind:?} is not valid"));
    }
    let ok_class = !class.is_empty()
        && class.len() <= 63
        && class.starts_with(alnum)
        && class.ends_with(alnum)
        && class
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.');
    if !ok_class {
        return Err(format!("class {class:?} of kind {kind:?} is not valid"));
    }
    Ok(())
}

/// Device names: alphanumerics with `-`, `_`, `.`, `:` inside.
fn check_device_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!("device name {name:?} is not valid"))
    }
}

fn check_edits(e: &ContainerEdits) -> Result<(), String> {
    for v in &e.env {
        if !v.contains('=') || v.starts_with('=') || v.contains('\0') {
            return Err(format!("env entry {v:?} is not NAME=value"));
        }
    }
    for d in &e.device_nodes {
        if !Path::new(&d.path).is_absolute() {
            return Err(format!("device node path {:?} is not absolute", d.path));
        }
        if let Some(h) = &d.host_path
            && !Path::new(h).is_absolute()
        {
            return Err(format!("device node hostPath {h:?} is not absolute"));
        }
        if let Some(t) = &d.kind
            && !matches!(t.as_str(), "b" | "c" | "u" | "p")
        {
            return Err(format!(
                "device node {:?}: type {t:?} is not b, c, u or p",
                d.path
            ));
        }
        if let Some(p) = &d.permissions
            && !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        {
            return Err(format!(
                "device node {:?}: permissions {p:?} may only hold r, w and m",
                d.path
            ));
        }
        if d.major.is_some_and(|m| !(0..=u32::MAX as i64).contains(&m))
            || d.minor.is_some_and(|m| !(0..=u32::MAX as i64).contains(&m))
        {
            return Err(format!(
                "device node {:?}: major/minor out of range",
                d.path
            ));
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() {
            return Err(format!("mount {:?} has no hostPath", m.container_path));
        }
        if !Path::new(&m.container_path).is_absolute() {
            return Err(format!(
                "mount containerPath {:?} is not absolute",
                m.container_path
            ));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!(
                "hook name {:?} is not one of {}",
                h.hook_name,
                HOOK_NAMES.join(", ")
            ));
        }
        if !Path::new(&h.path).is_absolute() {
            return Err(format!("hook path {:?} is not absolute", h.path));
        }
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!("hook {:?}: timeout must be positive", h.path));
        }
    }
    Ok(())
}

/// Parses one spec file's text; `yaml` chooses the syntax. The edits crius
/// cannot apply are listed in each `ContainerEdits::unsupported`.
fn parse_spec(text: &str, yaml: bool) -> Result<SpecFile, String> {
    let mut spec: SpecFile = if yaml {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    // A second, lenient pass over the same text for the fields we refuse.
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Dev {
        #[serde(default)]
        container_edits: UnsupportedEdits,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Top {
        #[serde(default)]
        devices: Vec<Dev>,
        #[serde(default)]
        container_edits: UnsupportedEdits,
    }
    let top: Top = if yaml {
        serde_saphyr::from_str(text).unwrap_or_default()
    } else {
        serde_json::from_str(text).unwrap_or_default()
    };
    let unsupported = |u: &UnsupportedEdits| {
        let mut out = Vec::new();
        if u.intel_rdt.is_some() {
            out.push("intelRdt".to_owned());
        }
        if u.net_devices.as_ref().is_some_and(|n| !n.is_empty()) {
            out.push("netDevices".to_owned());
        }
        out
    };
    spec.container_edits.unsupported = unsupported(&top.container_edits);
    for (d, u) in spec.devices.iter_mut().zip(&top.devices) {
        d.container_edits.unsupported = unsupported(&u.container_edits);
    }

    if spec.cdi_version.split('.').count() != 3
        || !spec
            .cdi_version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "cdiVersion {:?} is not a version such as 0.6.0",
            spec.cdi_version
        ));
    }
    check_kind(&spec.kind)?;
    if spec.devices.is_empty() {
        return Err("it defines no devices".to_owned());
    }
    check_edits(&spec.container_edits)?;
    let mut seen = BTreeSet::new();
    for d in &spec.devices {
        check_device_name(&d.name)?;
        if !seen.insert(d.name.as_str()) {
            return Err(format!("device {:?} is defined twice", d.name));
        }
        check_edits(&d.container_edits).map_err(|e| format!("device {:?}: {e}", d.name))?;
    }
    Ok(spec)
}

impl Registry {
    /// Reads every `*.json`, `*.yaml` and `*.yml` in `dirs` (in order; a
    /// missing dir is empty). Files that cannot be read, parsed or
    /// validated are logged with the reason and left out.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        // Every definition of each device, by dir index.
        let mut defs: BTreeMap<String, Vec<(usize, Loaded)>> = BTreeMap::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "CDI spec dir unreadable");
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "yaml" | "yml")
                    )
                })
                .collect();
            files.sort();
            for file in files {
                match read_spec(&file) {
                    Ok(spec) => {
                        let index = reg.specs.len();
                        reg.specs.push(spec.container_edits);
                        for d in spec.devices {
                            let loaded = Loaded {
                                file: file.clone(),
                                spec: index,
                                edits: d.container_edits,
                            };
                            defs.entry(format!("{}={}", spec.kind, d.name))
                                .or_default()
                                .push((priority, loaded));
                        }
                    }
                    Err(why) => {
                        tracing::warn!(file = %file.display(), error = %why, "CDI spec file refused");
                        reg.refused.push((file, why));
                    }
                }
            }
        }
        // The last dir defining a device wins; two files there conflict.
        for (name, mut all) in defs {
            let top = all.iter().map(|(p, _)| *p).max().unwrap_or(0);
            all.retain(|(p, _)| *p == top);
            match all.as_slice() {
                [(_, one)] => {
                    reg.devices.insert(name, one.clone());
                }
                [(_, a), (_, b), ..] => {
                    tracing::warn!(
                        device = %name,
                        first = %a.file.display(),
                        second = %b.file.display(),
                        "CDI device defined by two spec files of one dir; not usable"
                    );
                    reg.conflicts.insert(name, (a.file.clone(), b.file.clone()));
                }
                [] => {}
            }
        }
        reg
    }

    /// Whether a device of that name is defined (tests, diagnostics).
    pub fn contains(&self, full: &str) -> bool {
        self.devices.contains_key(full)
    }

    /// The edits for `names`, in order: each spec's top-level edits once
    /// (before its first device's), then the device's. Device nodes come
    /// back complete (type, major, minor, mode read from the host when the
    /// spec left them out). Blocking (stats host device nodes).
    pub fn resolve(&self, names: &[String]) -> Result<Vec<ContainerEdits>, CdiError> {
        let mut out = Vec::new();
        let mut specs_done = BTreeSet::new();
        for full in names {
            parse_name(full)?;
            let Some(dev) = self.devices.get(full) else {
                if let Some((a, b)) = self.conflicts.get(full) {
                    return Err(CdiError::Conflict {
                        name: full.clone(),
                        first: a.display().to_string(),
                        second: b.display().to_string(),
                    });
                }
                return Err(CdiError::Unknown {
                    name: full.clone(),
                    dirs: self
                        .dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let fail = |why: String| CdiError::Device {
                name: full.clone(),
                file: dev.file.display().to_string(),
                why,
            };
            let mut pending = Vec::new();
            if specs_done.insert(dev.spec) {
                pending.push(self.specs[dev.spec].clone());
            }
            pending.push(dev.edits.clone());
            for mut e in pending {
                if !e.unsupported.is_empty() {
                    return Err(fail(format!(
                        "uses {}, which crius does not support",
                        e.unsupported.join(" and ")
                    )));
                }
                for n in &mut e.device_nodes {
                    fill_from_host(n).map_err(&fail)?;
                }
                out.push(e);
            }
        }
        Ok(out)
    }
}

fn read_spec(file: &Path) -> Result<SpecFile, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut text = String::new();
    f.take(MAX_SPEC_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SPEC_BYTES {
        return Err(format!("larger than {MAX_SPEC_BYTES} bytes"));
    }
    let yaml = file.extension().is_some_and(|e| e != "json");
    parse_spec(&text, yaml)
}

/// Type, major, minor and mode of a device node from the host node
/// (`hostPath`, else `path`) when the spec does not give them, as the CDI
/// Go library does. A type the spec gives must match the host's.
fn fill_from_host(n: &mut DeviceNode) -> Result<(), String> {
    if n.kind.as_deref() == Some("p") || (n.kind.is_some() && n.major.is_some_and(|m| m != 0)) {
        return Ok(());
    }
    let host = n.host_path.clone().unwrap_or_else(|| n.path.clone());
    let md = nix::sys::stat::stat(Path::new(&host))
        .map_err(|e| format!("device node {:?}: host node {host}: {e}", n.path))?;
    let fmt = md.st_mode & libc::S_IFMT;
    let host_kind = match fmt {
        libc::S_IFCHR => "c",
        libc::S_IFBLK => "b",
        libc::S_IFIFO => "p",
        _ => {
            return Err(format!(
                "device node {:?}: host path {host} is not a device node",
                n.path
            ));
        }
    };
    match n.kind.as_deref() {
        None => n.kind = Some(host_kind.to_owned()),
        // "u" (unbuffered) is a character device on the host.
        Some(k) if k == host_kind || (k == "u" && host_kind == "c") => {}
        Some(k) => {
            return Err(format!(
                "device node {:?}: type {k:?} but host node {host} is {host_kind:?}",
                n.path
            ));
        }
    }
    if n.file_mode.is_none() {
        n.file_mode = Some(md.st_mode & 0o7777);
    }
    if host_kind != "p" {
        if n.major.is_none_or(|m| m == 0) {
            n.major = i64::try_from(nix::sys::stat::major(md.st_rdev)).ok();
        }
        if n.minor.is_none_or(|m| m == 0) {
            n.minor = i64::try_from(nix::sys::stat::minor(md.st_rdev)).ok();
        }
    }
    Ok(())
}

/// Applies resolved edits to an OCI spec in JSON form (`config.json`'s
/// field names), as `runtime/container/spec.rs` builds it.
pub fn apply(doc: &mut Value, edits: &[ContainerEdits]) {
    for e in edits {
        apply_one(doc, e);
    }
    if edits.iter().any(|e| !e.mounts.is_empty())
        && let Some(mounts) = doc["mounts"].as_array_mut()
    {
        // Parents before children; stable, so equal depths keep their order.
        mounts.sort_by_key(|m| {
            m["destination"]
                .as_str()
                .map(|d| Path::new(d).components().count())
                .unwrap_or(0)
        });
    }
}

fn apply_one(doc: &mut Value, e: &ContainerEdits) {
    for kv in &e.env {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        let env = array(&mut doc["process"]["env"]);
        let prefix = format!("{key}=");
        match env
            .iter_mut()
            .find(|v| v.as_str().is_some_and(|s| s.starts_with(&prefix)))
        {
            Some(v) => *v = json!(kv),
            None => env.push(json!(kv)),
        }
    }
    let uid = doc["process"]["user"]["uid"].as_u64().unwrap_or(0);
    let gid = doc["process"]["user"]["gid"].as_u64().unwrap_or(0);
    for n in &e.device_nodes {
        let kind = n.kind.clone().unwrap_or_else(|| "c".to_owned());
        let mut dev = json!({"path": n.path, "type": kind});
        if kind != "p" {
            dev["major"] = json!(n.major.unwrap_or(0));
            dev["minor"] = json!(n.minor.unwrap_or(0));
        }
        if let Some(m) = n.file_mode {
            dev["fileMode"] = json!(m);
        }
        // The node belongs to the container's user unless the spec says
        // otherwise (the Go library does the same for a non-root user).
        match n.uid {
            Some(u) => dev["uid"] = json!(u),
            None if uid > 0 => dev["uid"] = json!(uid),
            None => {}
        }
        match n.gid {
            Some(g) => dev["gid"] = json!(g),
            None if gid > 0 => dev["gid"] = json!(gid),
            None => {}
        }
        let devices = array(&mut doc["linux"]["devices"]);
        devices.retain(|d| d["path"].as_str() != Some(n.path.as_str()));
        devices.push(dev);
        if kind != "p" {
            let rule_type = if kind == "b" { "b" } else { "c" };
            let access = n
                .permissions
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rwm".to_owned());
            array(&mut doc["linux"]["resources"]["devices"]).push(json!({
                "allow": true,
                "type": rule_type,
                "major": n.major.unwrap_or(0),
                "minor": n.minor.unwrap_or(0),
                "access": access,
            }));
        }
    }
    for m in &e.mounts {
        // A CDI mount without a type is a bind mount (how CDI specs are
        // written: options ["ro", "nosuid", "nodev", "bind"]).
        let kind = m.kind.clone().unwrap_or_else(|| "bind".to_owned());
        let mut options = m.options.clone();
        if kind == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
            options.push("rbind".to_owned());
        }
        let mounts = array(&mut doc["mounts"]);
        mounts.retain(|x| {
            x["destination"].as_str().map(|d| d.trim_end_matches('/'))
                != Some(m.container_path.trim_end_matches('/'))
        });
        mounts.push(json!({
            "destination": m.container_path,
            "type": kind,
            "source": m.host_path,
            "options": options,
        }));
    }
    for h in &e.hooks {
        let mut hook = json!({"path": h.path});
        if !h.args.is_empty() {
            hook["args"] = json!(h.args);
        }
        if !h.env.is_empty() {
            hook["env"] = json!(h.env);
        }
        if let Some(t) = h.timeout {
            hook["timeout"] = json!(t);
        }
        array(&mut doc["hooks"][h.hook_name.as_str()]).push(hook);
    }
    let gids = array(&mut doc["process"]["user"]["additionalGids"]);
    for g in &e.additional_gids {
        if *g != 0 && !gids.iter().any(|x| x.as_u64() == Some(u64::from(*g))) {
            gids.push(json!(g));
        }
    }
}

/// The array at `v`, made one if it is null (absent).
fn array(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = json!([]);
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

/// CDI device names from kubelet's legacy annotations
/// (`cdi.k8s.io/<anything>` = comma-separated names), which device plugins
/// set before `CDI_devices` existed.
pub fn annotation_devices<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<String> {
    annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with("cdi.k8s.io/"))
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const JSON: &str = r#"{
        "cdiVersion": "0.6.0",
        "kind": "example.com/dev",
        "containerEdits": {"env": ["SPEC=1"]},
        "devices": [
            {"name": "null", "containerEdits": {
                "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null"}],
                "env": ["DEV=null"],
                "mounts": [{"hostPath": "/etc", "containerPath": "/host-etc", "options": ["ro", "bind"]}],
                "hooks": [{"hookName": "createContainer", "path": "/bin/true"}],
                "additionalGids": [0, 44]
            }},
            {"name": "zero", "containerEdits": {"deviceNodes": [{"path": "/dev/zero"}]}}
        ]
    }"#;

    const YAML: &str = "cdiVersion: 0.5.0\nkind: example.com/yaml\ndevices:\n  - name: a\n    containerEdits:\n      env: [\"A=1\"]\n";

    #[test]
    fn names_are_checked() {
        assert!(parse_name("example.com/dev=null").is_ok());
        assert!(parse_name("vendor.com/gpu=GPU-1:2").is_ok());
        for bad in [
            "nokind",
            "example.com=dev",
            "example.com/dev=",
            "/dev=x",
            "example.com/d/ev=x",
            "example.com/dev=-x",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_and_yaml_specs_resolve_with_spec_edits_once() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.json", JSON);
        write(d.path(), "b.yaml", YAML);
        let reg = Registry::load(&[d.path().to_owned()]);
        assert!(reg.refused.is_empty(), "{:?}", reg.refused);
        assert!(reg.contains("example.com/yaml=a"));
        let edits = reg
            .resolve(&["example.com/dev=null".into(), "example.com/dev=zero".into()])
            .unwrap();
        // Spec edits, then each device's.
        assert_eq!(edits.len(), 3);
        assert_eq!(edits[0].env, vec!["SPEC=1"]);
        let null = &edits[1].device_nodes[0];
        assert_eq!(null.kind.as_deref(), Some("c"));
        assert_eq!((null.major, null.minor), (Some(1), Some(3)));
        assert_eq!(edits[2].device_nodes[0].minor, Some(5));
    }

    #[test]
    fn unknown_malformed_and_conflicting() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        write(d1.path(), "a.json", JSON);
        write(d1.path(), "broken.json", "{ not json");
        write(
            d1.path(),
            "badhook.yaml",
            "cdiVersion: 0.6.0\nkind: x.com/y\ndevices:\n  - name: a\n    containerEdits:\n      hooks: [{hookName: nope, path: /bin/true}]\n",
        );
        // Same device twice in d2: a conflict, unless overridden later.
        write(d2.path(), "c1.yaml", YAML);
        write(d2.path(), "c2.yaml", YAML);
        let reg = Registry::load(&[d1.path().to_owned(), d2.path().to_owned()]);
        assert_eq!(reg.refused.len(), 2, "{:?}", reg.refused);
        assert!(reg.resolve(&["example.com/dev=zero".into()]).is_ok());
        let err = reg.resolve(&["example.com/dev=gone".into()]).unwrap_err();
        assert!(matches!(err, CdiError::Unknown { .. }), "{err}");
        assert!(err.to_string().contains("example.com/dev=gone"));
        let err = reg.resolve(&["example.com/yaml=a".into()]).unwrap_err();
        assert!(matches!(err, CdiError::Conflict { .. }), "{err}");
    }

    #[test]
    fn later_dirs_override_earlier_ones() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        write(d1.path(), "a.yaml", YAML);
        write(d2.path(), "a.yaml", &YAML.replace("A=1", "A=2"));
        let reg = Registry::load(&[d1.path().to_owned(), d2.path().to_owned()]);
        let e = reg.resolve(&["example.com/yaml=a".into()]).unwrap();
        assert_eq!(e[1].env, vec!["A=2"]);
    }

    #[test]
    fn unsupported_edits_refuse_the_device() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "n.json",
            r#"{"cdiVersion":"0.7.0","kind":"x.com/net","devices":[{"name":"a","containerEdits":{"netDevices":[{"hostInterfaceName":"e","name":"e"}]}}]}"#,
        );
        let reg = Registry::load(&[d.path().to_owned()]);
        let err = reg.resolve(&["x.com/net=a".into()]).unwrap_err();
        assert!(err.to_string().contains("netDevices"), "{err}");
    }

    #[test]
    fn apply_edits_the_oci_spec() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.json", JSON);
        let reg = Registry::load(&[d.path().to_owned()]);
        let edits = reg.resolve(&["example.com/dev=null".into()]).unwrap();
        let mut doc = json!({
            "process": {"env": ["PATH=/bin", "SPEC=0"], "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000]}},
            "mounts": [{"destination": "/proc"}, {"destination": "/host-etc", "source": "/old"}, {"destination": "/a/b/c"}],
            "linux": {"devices": [], "resources": {"devices": [{"allow": false, "access": "rwm"}]}},
        });
        apply(&mut doc, &edits);
        let env: Vec<&str> = doc["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(env, vec!["PATH=/bin", "SPEC=1", "DEV=null"]);
        let dev = &doc["linux"]["devices"][0];
        assert_eq!(dev["path"], "/dev/cdi-null");
        assert_eq!(dev["type"], "c");
        assert_eq!(
            (dev["major"].as_i64(), dev["minor"].as_i64()),
            (Some(1), Some(3))
        );
        assert_eq!(dev["uid"], 1000);
        let rule = &doc["linux"]["resources"]["devices"][1];
        assert_eq!(rule["access"], "rwm");
        assert_eq!(rule["allow"], true);
        let mounts = doc["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, vec!["/proc", "/host-etc", "/a/b/c"]);
        assert_eq!(mounts[1]["source"], "/etc");
        assert_eq!(doc["hooks"]["createContainer"][0]["path"], "/bin/true");
        assert_eq!(doc["process"]["user"]["additionalGids"], json!([1000, 44]));
    }

    #[test]
    fn device_rules_keep_the_spec_access() {
        let node = DeviceNode {
            path: "/dev/x".into(),
            kind: Some("c".into()),
            major: Some(10),
            minor: Some(237),
            permissions: Some("r".into()),
            ..Default::default()
        };
        let edits = ContainerEdits {
            device_nodes: vec![node],
            ..Default::default()
        };
        let mut doc = json!({"process": {"user": {"uid": 0, "gid": 0}}});
        apply(&mut doc, &[edits]);
        let rule = &doc["linux"]["resources"]["devices"][0];
        assert_eq!(rule["access"], "r");
        assert_eq!(
            (rule["major"].as_i64(), rule["minor"].as_i64()),
            (Some(10), Some(237))
        );
        assert!(doc["linux"]["devices"][0].get("uid").is_none());
    }

    #[test]
    fn annotations_name_devices() {
        let a: BTreeMap<String, String> = [
            (
                "cdi.k8s.io/plugin_1".to_string(),
                "a.com/b=c, a.com/b=d".to_string(),
            ),
            ("other".to_string(), "x.com/y=z".to_string()),
        ]
        .into();
        assert_eq!(annotation_devices(&a), vec!["a.com/b=c", "a.com/b=d"]);
    }
}
