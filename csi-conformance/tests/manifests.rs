//! The Kubernetes manifests in `deploy/`: every kustomization renders with `kubectl kustomize`,
//! every object passes the Kubernetes schemas (`kubernetes-validate`, offline), every flag given to
//! one of our binaries is in that binary's `--help`, every sidecar flag is one that sidecar has,
//! the workloads have the shape the design needs (attach, fsGroup policy, propagation, the FUSE
//! host's update strategy, free host ports), and the registry and the kubelet directory really are
//! set in one place.
//!
//! Tools: `kubectl`, `python3` with PyYAML, `kubernetes-validate` (`pip install
//! kubernetes-validate`, which brings PyYAML), and the workspace binaries in the target directory
//! (`cargo build --workspace --bins`). A missing one fails the test with its name: nothing is
//! skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Our images, named after the binary they start by default. `cos-fuse` ships in the csi-cos
/// and csi-goosefs images (the FUSE hosts run `cos-fuse host`).
const OUR_IMAGES: [&str; 4] = ["csi-cbs", "csi-cfs", "csi-cos", "csi-goosefs"];
const OUR_BINARIES: [&str; 5] = ["csi-cbs", "csi-cfs", "csi-cos", "csi-goosefs", "cos-fuse"];

/// The oldest Kubernetes the manifests support: 1.30, the oldest the pinned sidecars
/// (csi-provisioner v6.1, csi-resizer v2.0, built for 1.34) are run with here; fsGroup delegation
/// to CSI drivers (GA in 1.26), which csi-cos and csi-goosefs rely on, is older. They are also
/// checked against the newest version kubernetes-validate knows.
const OLDEST_KUBERNETES: &str = "1.30.0";

/// Kinds with no schema in kubernetes-validate: the snapshot CRDs, which are not part of
/// Kubernetes itself. Left out of the schema check by name; any other kind without a schema
/// fails it.
const CRD_KINDS: [(&str, &str); 2] = [
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"),
    ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
];

/// The flags our manifests may give each sidecar, by image, with the image's major version. Taken
/// from each sidecar's own flag definitions at that version (kubernetes-csi's `cmd/` sources and
/// READMEs); add a flag here only after checking it there. klog's `-v` is everyone's.
const SIDECARS: [(&str, &str, &[&str]); 6] = [
    (
        "csi-provisioner",
        "v6",
        &[
            "csi-address",
            "leader-election",
            "leader-election-namespace",
            "timeout",
            "worker-threads",
            "feature-gates",
            "extra-create-metadata",
            "default-fstype",
            "http-endpoint",
            "kube-api-qps",
            "kube-api-burst",
            "retry-interval-start",
            "retry-interval-max",
            "v",
        ],
    ),
    (
        "csi-attacher",
        "v4",
        &[
            "csi-address",
            "leader-election",
            "leader-election-namespace",
            "timeout",
            "worker-threads",
            "http-endpoint",
            "kube-api-qps",
            "kube-api-burst",
            "retry-interval-start",
            "retry-interval-max",
            "reconcile-sync",
            "v",
        ],
    ),
    (
        "csi-resizer",
        "v2",
        &[
            "csi-address",
            "leader-election",
            "leader-election-namespace",
            "timeout",
            "workers",
            "handle-volume-inuse-error",
            "http-endpoint",
            "kube-api-qps",
            "kube-api-burst",
            "retry-interval-start",
            "retry-interval-max",
            "feature-gates",
            "v",
        ],
    ),
    (
        "csi-snapshotter",
        "v8",
        &[
            "csi-address",
            "leader-election",
            "leader-election-namespace",
            "timeout",
            "worker-threads",
            "http-endpoint",
            "kube-api-qps",
            "kube-api-burst",
            "retry-interval-start",
            "retry-interval-max",
            "extra-create-metadata",
            "v",
        ],
    ),
    (
        "csi-node-driver-registrar",
        "v2",
        &[
            "csi-address",
            "kubelet-registration-path",
            "plugin-registration-path",
            "http-endpoint",
            "timeout",
            "v",
        ],
    ),
    (
        "livenessprobe",
        "v2",
        &[
            "csi-address",
            "http-endpoint",
            "health-port",
            "probe-timeout",
            "v",
        ],
    ),
];

// ---------------------------------------------------------------------------------------------
// Tools

/// Runs `program args...` with `stdin`; a program that is not installed fails the test with its
/// name and how to get it.
fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let hint = match program {
        "kubectl" => "kubectl renders deploy/ (`kubectl kustomize`); install kubectl",
        "python3" => "python3 with PyYAML turns the rendered YAML into JSON",
        "kubernetes-validate" => {
            "kubernetes-validate checks the schemas: pip install kubernetes-validate"
        }
        _ => "",
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}. {hint}"));
    // Fed from a thread, so that a child writing before it has read everything can't block us;
    // a child that dies early shows in its status and stderr, not as a broken pipe here.
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let output = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    output
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

/// Every directory under `base/` and `overlays/` that holds a kustomization, relative to `root`.
fn kustomizations(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for group in ["base", "overlays"] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(group))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("kustomization.yaml").is_file())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_str().unwrap();
            found.push(format!("{group}/{name}"));
        }
    }
    found
}

/// YAML documents to JSON values, through PyYAML.
fn yaml_to_json(yaml: &[u8], what: &str) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = run("python3", &["-c", SCRIPT], Some(yaml));
    assert!(
        out.status.success(),
        "python3 could not read {what} as YAML (is PyYAML installed? pip install \
         kubernetes-validate brings it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("{what}: expected a list of documents, got {other}"),
    }
}

/// `kubectl kustomize <root>/<dir>`, as YAML.
fn render_yaml(root: &Path, dir: &str) -> Vec<u8> {
    let path = root.join(dir);
    let out = run("kubectl", &["kustomize", path.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/{dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn render(root: &Path, dir: &str) -> Vec<Value> {
    let docs = yaml_to_json(&render_yaml(root, dir), &format!("deploy/{dir}"));
    assert!(!docs.is_empty(), "deploy/{dir} renders nothing");
    docs
}

// ---------------------------------------------------------------------------------------------
// Reading objects

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    list(v, pointer)
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn kind(obj: &Value) -> &str {
    text(obj, "/kind")
}

fn name(obj: &Value) -> &str {
    text(obj, "/metadata/name")
}

/// The pod spec of a workload, if it is one.
fn pod_spec(obj: &Value) -> Option<&Value> {
    match kind(obj) {
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "Job" => {
            obj.pointer("/spec/template/spec")
        }
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => obj.pointer("/spec"),
        _ => None,
    }
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    list(spec, "/initContainers")
        .iter()
        .chain(list(spec, "/containers"))
}

fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    list(spec, "/containers")
        .iter()
        .find(|c| text(c, "/name") == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// `registry/path/csi-cbs:0.1.0` -> (`csi-cbs`, `0.1.0`).
fn image_name_and_tag(image: &str) -> (&str, &str) {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').unwrap_or((last, ""))
}

/// The value of `--flag=value` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// Where each named object of deploy/ is written: `(kind, name)` -> file.
fn source_files(root: &Path) -> BTreeMap<(String, String), String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join("base"), &mut files);
    walk(&root.join("overlays"), &mut files);
    let mut index = BTreeMap::new();
    for file in files {
        let rel = format!(
            "deploy/{}",
            file.strip_prefix(root).unwrap().to_str().unwrap()
        );
        for doc in yaml_to_json(&std::fs::read(&file).unwrap(), &rel) {
            if !kind(&doc).is_empty() && !name(&doc).is_empty() {
                index
                    .entry((kind(&doc).to_owned(), name(&doc).to_owned()))
                    .or_insert_with(|| rel.clone());
            }
        }
    }
    index
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_kustomization_renders_and_passes_the_kubernetes_schemas() {
    let root = deploy_dir();
    let dirs = kustomizations(&root);
    for expected in [
        "base/cbs",
        "base/cfs",
        "base/cfsturbo",
        "base/cos",
        "base/goosefs",
        "overlays/tke",
        "overlays/examples",
    ] {
        assert!(
            dirs.iter().any(|d| d == expected),
            "deploy/{expected} is missing"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut left_out = BTreeSet::new();
    for dir in &dirs {
        let docs = render(&root, dir);
        let mut checked = Vec::new();
        for doc in docs {
            let id = (text(&doc, "/apiVersion"), kind(&doc));
            if CRD_KINDS.contains(&id) {
                left_out.insert(format!("{} {}", id.0, id.1));
            } else {
                checked.push(serde_json::to_string(&doc).unwrap());
            }
        }
        let file = scratch
            .path()
            .join(format!("{}.yaml", dir.replace('/', "-")));
        std::fs::write(&file, checked.join("\n---\n")).unwrap();
        let file = file.to_str().unwrap();
        for versions in [&["-k", OLDEST_KUBERNETES][..], &[][..]] {
            let mut args = vec!["--strict", "--quiet"];
            args.extend_from_slice(versions);
            args.push(file);
            let out = run("kubernetes-validate", &args, None);
            let report = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            // WARN is how kubernetes-validate says it has no schema for a kind, and then passes
            // it: a kind this test doesn't know about must not slip through that way.
            let bad: Vec<&str> = report
                .lines()
                .filter(|l| {
                    l.starts_with("ERROR") || l.starts_with("WARN") || l.starts_with("FATAL")
                })
                .collect();
            if !out.status.success() || !bad.is_empty() {
                failures.push(format!(
                    "deploy/{dir} ({}):\n{}",
                    if versions.is_empty() {
                        "newest Kubernetes"
                    } else {
                        OLDEST_KUBERNETES
                    },
                    if bad.is_empty() {
                        report.clone()
                    } else {
                        bad.join("\n")
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "schema check failed:\n{}",
        failures.join("\n")
    );
    eprintln!("not schema-checked (CRDs): {left_out:?}");
}

/// The long and short flags a binary's `--help` lists.
fn help_flags(binary: &str, subcommand: &[String]) -> Result<BTreeSet<String>, String> {
    let path = e2e::bin_path(binary).map_err(|e| format!("{e:#}"))?;
    let out = Command::new(&path)
        .args(subcommand)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let shown = [binary.to_owned()]
        .iter()
        .chain(subcommand)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if !out.status.success() {
        return Err(format!(
            "`{shown} --help` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags = BTreeSet::new();
    for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '(') {
        let dashes = if word.starts_with("--") {
            2
        } else if word.starts_with('-') {
            1
        } else {
            continue;
        };
        let flag: String = word[dashes..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !flag.is_empty() && (dashes == 2 || flag.len() == 1) {
            flags.insert(format!("{}{flag}", "-".repeat(dashes)));
        }
    }
    Ok(flags)
}

/// Which of our binaries a container runs, with its subcommand: from its command when that names
/// one of them (`cos-fuse host`), else the image's own binary (also under a shell wrapper, which
/// must `exec` it).
fn our_program(c: &Value) -> Result<(String, Vec<String>), String> {
    let (image, _) = image_name_and_tag(text(c, "/image"));
    let command = strings(c, "/command");
    let Some(first) = command.first() else {
        return Ok((image.to_owned(), Vec::new()));
    };
    let program = first.rsplit('/').next().unwrap_or(first);
    if OUR_BINARIES.contains(&program) {
        let subcommand = command[1..]
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        return Ok((program.to_owned(), subcommand));
    }
    let script = command.join(" ");
    if script.contains(&format!("exec {image}")) {
        Ok((image.to_owned(), Vec::new()))
    } else {
        Err(format!(
            "its command {command:?} neither names one of {OUR_BINARIES:?} nor execs {image}"
        ))
    }
}

#[test]
fn our_binaries_accept_every_flag_the_manifests_pass() {
    let root = deploy_dir();
    let sources = source_files(&root);
    let mut help: BTreeMap<(String, Vec<String>), Result<BTreeSet<String>, String>> =
        BTreeMap::new();
    let mut failures = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for dir in kustomizations(&root) {
        for obj in render(&root, &dir) {
            let Some(spec) = pod_spec(&obj) else { continue };
            let file = sources
                .get(&(kind(&obj).to_owned(), name(&obj).to_owned()))
                .cloned()
                .unwrap_or_else(|| format!("deploy/{dir}"));
            for c in containers(spec) {
                let (image, _) = image_name_and_tag(text(c, "/image"));
                if !OUR_IMAGES.contains(&image) {
                    continue;
                }
                let at = format!(
                    "{file}: {} {}, container {}",
                    kind(&obj),
                    name(&obj),
                    text(c, "/name")
                );
                let (binary, subcommand) = match our_program(c) {
                    Ok(p) => p,
                    Err(e) => {
                        failures.insert(format!("{at}: {e}"));
                        continue;
                    }
                };
                seen.insert(binary.clone());
                let shown = [binary.clone()]
                    .iter()
                    .chain(&subcommand)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                let flags = help
                    .entry((binary.clone(), subcommand.clone()))
                    .or_insert_with(|| help_flags(&binary, &subcommand));
                let flags = match flags {
                    Ok(flags) => flags,
                    Err(e) => {
                        failures.insert(format!("{at}: {e}"));
                        continue;
                    }
                };
                for arg in strings(c, "/args") {
                    if !arg.starts_with('-') {
                        continue;
                    }
                    let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
                    if !flags.contains(flag) {
                        failures.insert(format!(
                            "{at}: {shown} has no flag {flag} (not in `{shown} --help`)"
                        ));
                    }
                }
            }
        }
    }
    for binary in OUR_BINARIES {
        assert!(
            seen.contains(binary),
            "no manifest runs {binary}: this test would check nothing for it"
        );
    }
    assert!(
        failures.is_empty(),
        "flags the binaries don't have:\n{}",
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn sidecar_flags_are_ones_the_sidecars_have() {
    let root = deploy_dir();
    let sources = source_files(&root);
    let mut failures = BTreeSet::new();
    let mut used = BTreeSet::new();
    for dir in kustomizations(&root) {
        for obj in render(&root, &dir) {
            let Some(spec) = pod_spec(&obj) else { continue };
            for c in containers(spec) {
                let (image, tag) = image_name_and_tag(text(c, "/image"));
                if OUR_IMAGES.contains(&image) {
                    continue;
                }
                let file = sources
                    .get(&(kind(&obj).to_owned(), name(&obj).to_owned()))
                    .cloned()
                    .unwrap_or_else(|| format!("deploy/{dir}"));
                let at = format!(
                    "{file}: {} {}, container {} ({image}:{tag})",
                    kind(&obj),
                    name(&obj),
                    text(c, "/name")
                );
                let Some((_, major, known)) = SIDECARS.iter().find(|(i, _, _)| *i == image) else {
                    failures.insert(format!(
                        "{at}: an image this test doesn't know: add its flags to SIDECARS"
                    ));
                    continue;
                };
                used.insert(image.to_owned());
                if !tag.starts_with(&format!("{major}.")) {
                    failures.insert(format!("{at}: expected a pinned {major}.x tag"));
                }
                for arg in strings(c, "/args") {
                    let body = arg
                        .strip_prefix("--")
                        .or_else(|| arg.strip_prefix('-'))
                        .unwrap_or("");
                    let (flag, value) = body.split_once('=').unwrap_or((body, "x"));
                    let well_formed = flag.starts_with(|c: char| c.is_ascii_lowercase())
                        && flag
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !value.is_empty();
                    if !well_formed {
                        failures.insert(format!("{at}: malformed argument {arg:?}"));
                    } else if !known.contains(&flag) {
                        failures.insert(format!("{at}: {image} has no flag --{flag}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "sidecar arguments:\n{}",
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        used.len(),
        SIDECARS.len(),
        "every sidecar in SIDECARS is used: {used:?}"
    );
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn registry_and_kubelet_dir_are_set_in_one_place() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("deploy");
    copy_tree(&deploy_dir(), &root);
    let settings = root.join("overlays/tke/settings.yaml");
    let original = std::fs::read_to_string(&settings).unwrap();
    let mut changed = 0;
    let edited: Vec<String> = original
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("registry:") {
                changed += 1;
                format!("{indent}registry: registry.test:5000/ns")
            } else if trimmed.starts_with("kubeletDir:") {
                changed += 1;
                format!("{indent}kubeletDir: /data/kubelet")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        changed, 2,
        "settings.yaml has one registry and one kubeletDir"
    );
    std::fs::write(&settings, edited.join("\n") + "\n").unwrap();

    let yaml = String::from_utf8(render_yaml(&root, "overlays/tke")).unwrap();
    assert!(
        !yaml.contains("/var/lib/kubelet"),
        "with kubeletDir /data/kubelet, /var/lib/kubelet is still rendered:\n{}",
        yaml.lines()
            .filter(|l| l.contains("/var/lib/kubelet"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let docs = yaml_to_json(yaml.as_bytes(), "the edited tke overlay");
    assert!(
        !docs.iter().any(|d| name(d) == "csi-settings"),
        "the settings ConfigMap is local-config and must not be applied"
    );
    let (mut daemonsets, mut mounting) = (0, 0);
    for obj in &docs {
        let Some(spec) = pod_spec(obj) else { continue };
        for c in containers(spec) {
            let image = text(c, "/image");
            let (image_name, _) = image_name_and_tag(image);
            if OUR_IMAGES.contains(&image_name) {
                assert!(
                    image.starts_with("registry.test:5000/ns/"),
                    "{} {}: {image} ignores the registry setting",
                    kind(obj),
                    name(obj)
                );
            } else {
                assert!(
                    image.starts_with("registry.k8s.io/sig-storage/"),
                    "{} {}: a sidecar's image was rewritten: {image}",
                    kind(obj),
                    name(obj)
                );
            }
        }
        if kind(obj) != "DaemonSet" {
            continue;
        }
        daemonsets += 1;
        let kubelet = list(spec, "/volumes")
            .iter()
            .find(|v| text(v, "/name") == "kubelet-dir")
            .unwrap_or_else(|| panic!("{}: no kubelet-dir volume", name(obj)));
        assert_eq!(
            text(kubelet, "/hostPath/path"),
            "/data/kubelet",
            "{}",
            name(obj)
        );
        for c in containers(spec) {
            for m in list(c, "/volumeMounts") {
                if text(m, "/name") == "kubelet-dir" {
                    assert_eq!(text(m, "/mountPath"), "/data/kubelet", "{}", name(obj));
                }
            }
        }
        // Node plugins and FUSE hosts mount only under kubelet's directory (KUBELET_DIR): left
        // at the default, every staging and target path would be refused.
        let component = text(obj, "/metadata/labels/app.kubernetes.io~1component");
        if component == "node-plugin" || component == "fuse-host" {
            mounting += 1;
            let container = if component == "node-plugin" {
                "driver"
            } else {
                "fuse-host"
            };
            let driver = containers(spec)
                .find(|c| text(c, "/name") == container)
                .unwrap_or_else(|| panic!("{}: no {container} container", name(obj)));
            let kubelet_env = list(driver, "/env")
                .iter()
                .find(|e| text(e, "/name") == "KUBELET_DIR")
                .map(|e| text(e, "/value").to_owned());
            assert_eq!(
                kubelet_env.as_deref(),
                Some("/data/kubelet"),
                "{}: KUBELET_DIR does not follow the setting",
                name(obj)
            );
        }
    }
    assert_eq!(daemonsets, 7, "5 node plugins and 2 FUSE hosts");
    assert_eq!(
        mounting, 7,
        "every DaemonSet mounts, and follows kubeletDir"
    );
}

#[test]
fn drivers_have_the_shape_the_design_needs() {
    let docs = render(&deploy_dir(), "overlays/tke");
    let find = |k: &str, n: &str| {
        docs.iter()
            .find(|d| kind(d) == k && name(d) == n)
            .unwrap_or_else(|| panic!("no {k} {n} in deploy/overlays/tke"))
    };

    // CSIDriver objects: the old drivers' names, attach only for CBS, fsGroup policies as
    // explained in the csidriver.yaml files.
    // The FUSE drivers ask for republishing: a rotated publish Secret reaches a running mount.
    for (driver, attach, fs_group, republish) in [
        ("com.tencent.cloud.csi.cbs", true, "File", false),
        ("com.tencent.cloud.csi.cfs", false, "None", false),
        ("com.tencent.cloud.csi.cfsturbo", false, "None", false),
        ("com.tencent.cloud.csi.cosfs", false, "File", true),
        ("com.tencent.cloud.csi.goosefs", false, "File", true),
    ] {
        let d = find("CSIDriver", driver);
        assert_eq!(
            d.pointer("/spec/attachRequired"),
            Some(&Value::Bool(attach))
        );
        assert_eq!(text(d, "/spec/fsGroupPolicy"), fs_group, "{driver}");
        assert_eq!(
            d.pointer("/spec/requiresRepublish"),
            Some(&Value::Bool(republish)),
            "{driver}"
        );
        assert_eq!(strings(d, "/spec/volumeLifecycleModes"), ["Persistent"]);
    }

    for short in ["cbs", "cfs", "cfsturbo", "cos", "goosefs"] {
        // Controllers: two replicas, every Kubernetes-facing sidecar elects a leader.
        let controller = find("Deployment", &format!("csi-{short}-controller"));
        assert_eq!(controller.pointer("/spec/replicas"), Some(&Value::from(2)));
        let spec = pod_spec(controller).unwrap();
        assert_eq!(text(spec, "/priorityClassName"), "system-cluster-critical");
        assert_eq!(
            flag_value(&strings(container(spec, "driver"), "/args"), "--mode"),
            Some("controller")
        );
        for c in list(spec, "/containers") {
            let (image, _) = image_name_and_tag(text(c, "/image"));
            if image.starts_with("csi-") && !OUR_IMAGES.contains(&image) {
                let args = strings(c, "/args");
                assert!(
                    args.iter().any(|a| a == "--leader-election"),
                    "csi-{short}-controller: {image} without --leader-election"
                );
                assert!(
                    flag_value(&args, "--timeout").is_some(),
                    "csi-{short}-controller: {image} keeps the default timeout"
                );
            }
        }

        // Node plugins: privileged, kubelet's directory shared both ways, on every node.
        let node = find("DaemonSet", &format!("csi-{short}-node"));
        let spec = pod_spec(node).unwrap();
        assert_eq!(text(spec, "/priorityClassName"), "system-node-critical");
        assert!(
            list(spec, "/tolerations")
                .iter()
                .any(|t| text(t, "/operator") == "Exists" && text(t, "/key").is_empty()),
            "csi-{short}-node must tolerate every taint"
        );
        assert_eq!(text(node, "/spec/updateStrategy/type"), "RollingUpdate");
        let driver = container(spec, "driver");
        assert_eq!(
            driver.pointer("/securityContext/privileged"),
            Some(&Value::Bool(true))
        );
        assert!(
            list(driver, "/volumeMounts").iter().any(|m| {
                text(m, "/name") == "kubelet-dir" && text(m, "/mountPropagation") == "Bidirectional"
            }),
            "csi-{short}-node: kubelet's directory must be mounted Bidirectional"
        );
        assert_eq!(
            flag_value(&strings(driver, "/args"), "--mode"),
            Some("node")
        );
        // The FUSE drivers' node plugins read PVs (an empty publish Secret from none).
        let reads_pvs = matches!(short, "cos" | "goosefs");
        assert_eq!(
            spec.get("automountServiceAccountToken"),
            Some(&Value::Bool(reads_pvs)),
            "csi-{short}-node: API access only for reading PVs"
        );
    }

    // CFS Turbo is csi-cfs with --flavor=turbo in both workloads (else it would serve, and
    // register with kubelet as, com.tencent.cloud.csi.cfs), with the Turbo socket path, and no
    // API keys: it makes no cloud call.
    for workload in [
        find("Deployment", "csi-cfsturbo-controller"),
        find("DaemonSet", "csi-cfsturbo-node"),
    ] {
        let spec = pod_spec(workload).unwrap();
        let driver = container(spec, "driver");
        let (image, _) = image_name_and_tag(text(driver, "/image"));
        assert_eq!(image, "csi-cfs", "{}", name(workload));
        let args = strings(driver, "/args");
        assert_eq!(
            flag_value(&args, "--flavor"),
            Some("turbo"),
            "{}",
            name(workload)
        );
        assert!(
            flag_value(&args, "--credentials-dir").is_none()
                && !list(spec, "/volumes")
                    .iter()
                    .any(|v| v.get("secret").is_some()),
            "{}: CFS Turbo needs no API keys",
            name(workload)
        );
    }
    let turbo_node = pod_spec(find("DaemonSet", "csi-cfsturbo-node")).unwrap();
    let registration = list(container(turbo_node, "node-driver-registrar"), "/env")
        .iter()
        .find(|e| text(e, "/name") == "DRIVER_REG_SOCK_PATH")
        .map(|e| text(e, "/value"))
        .expect("DRIVER_REG_SOCK_PATH");
    assert!(
        registration.ends_with("/plugins/com.tencent.cloud.csi.cfsturbo/csi.sock"),
        "csi-cfsturbo-node registers {registration}"
    );
    // Its own node-wide mounts directory: csi-cfs counts the users of the mounts in its own.
    let mounts_dir = |n: &str| {
        let spec = pod_spec(find("DaemonSet", n)).unwrap();
        flag_value(&strings(container(spec, "driver"), "/args"), "--mounts-dir")
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{n}: no --mounts-dir"))
    };
    assert_ne!(mounts_dir("csi-cfs-node"), mounts_dir("csi-cfsturbo-node"));

    // The FUSE hosts: their own DaemonSets, whose daemons outlive the pod (the node's PID
    // namespace, a cgroup of their own on the node's cgroup file system), so a rolling update
    // replaces the pod under live mounts; reachable by the node plugin through a shared host
    // directory.
    for short in ["cos", "goosefs"] {
        let host = find("DaemonSet", &format!("csi-{short}-fuse-host"));
        let host_spec = pod_spec(host).unwrap();
        let fuse = container(host_spec, "fuse-host");
        assert_eq!(strings(fuse, "/command"), ["cos-fuse", "host"]);
        assert_eq!(
            host_spec.pointer("/hostPID"),
            Some(&Value::Bool(true)),
            "csi-{short}-fuse-host: daemons in the container's PID namespace die with it"
        );
        let fuse_args = strings(fuse, "/args");
        let cgroup_fs = flag_value(&fuse_args, "--daemon-cgroup-fs").unwrap_or_else(|| {
            panic!("csi-{short}-fuse-host: daemons in the container's cgroup die with it")
        });
        let mounted = list(fuse, "/volumeMounts")
            .iter()
            .find(|m| text(m, "/mountPath") == cgroup_fs)
            .unwrap_or_else(|| panic!("csi-{short}-fuse-host: {cgroup_fs} is not mounted"));
        let volume = list(host_spec, "/volumes")
            .iter()
            .find(|v| text(v, "/name") == text(mounted, "/name"))
            .unwrap();
        assert_eq!(
            text(volume, "/hostPath/path"),
            "/sys/fs/cgroup",
            "csi-{short}-fuse-host: --daemon-cgroup-fs must be the node's cgroup file system"
        );
        assert!(
            flag_value(&fuse_args, "--daemon-memory-max-mb").is_some(),
            "csi-{short}-fuse-host: each daemon's memory limit"
        );
        assert_eq!(text(host, "/spec/updateStrategy/type"), "RollingUpdate");
        assert_eq!(
            fuse.pointer("/securityContext/privileged"),
            Some(&Value::Bool(true))
        );
        assert!(
            list(fuse, "/volumeMounts").iter().any(|m| {
                text(m, "/name") == "kubelet-dir" && text(m, "/mountPropagation") == "Bidirectional"
            }),
            "csi-{short}-fuse-host: kubelet's directory must be mounted Bidirectional"
        );
        assert!(
            list(fuse, "/volumeMounts")
                .iter()
                .any(|m| text(m, "/mountPath") == "/dev/fuse")
        );
        assert!(
            flag_value(&strings(fuse, "/args"), "--state-dir").is_some(),
            "the FUSE host records its mounts"
        );
        let node_spec = pod_spec(find("DaemonSet", &format!("csi-{short}-node"))).unwrap();
        let driver = container(node_spec, "driver");
        let plugin_args = strings(driver, "/args");
        let host_args = strings(fuse, "/args");
        let plugin_socket =
            flag_value(&plugin_args, "--fuse-host-socket").expect("--fuse-host-socket");
        let host_socket = flag_value(&host_args, "--socket").expect("--socket");
        assert_eq!(
            plugin_socket, host_socket,
            "csi-{short}: one socket path in both"
        );
        // The socket's directory is the same host directory in both pods.
        let host_dir_of = |spec: &Value, c: &Value| -> String {
            let mount = list(c, "/volumeMounts")
                .iter()
                .find(|m| Path::new(host_socket).parent() == Some(Path::new(text(m, "/mountPath"))))
                .unwrap_or_else(|| panic!("csi-{short}: the socket's directory is not mounted"));
            let volume = list(spec, "/volumes")
                .iter()
                .find(|v| text(v, "/name") == text(mount, "/name"))
                .unwrap();
            text(volume, "/hostPath/path").to_owned()
        };
        // Each volume's node-wide mount is made by the FUSE host and bind-mounted by the plugin:
        // --mounts-dir must lie in kubelet's directory, which both mount at the same path.
        let kubelet_dir = list(driver, "/env")
            .iter()
            .find(|e| text(e, "/name") == "KUBELET_DIR")
            .map(|e| text(e, "/value"))
            .expect("KUBELET_DIR");
        let mounts_dir = flag_value(&plugin_args, "--mounts-dir").expect("--mounts-dir");
        assert!(
            mounts_dir.starts_with("$(KUBELET_DIR)/"),
            "csi-{short}: --mounts-dir={mounts_dir} is not under kubelet's directory"
        );
        for c in [driver, fuse] {
            assert!(
                list(c, "/volumeMounts").iter().any(|m| {
                    text(m, "/name") == "kubelet-dir" && text(m, "/mountPath") == kubelet_dir
                }),
                "csi-{short}: {} does not mount kubelet's directory at {kubelet_dir}",
                text(c, "/name")
            );
        }
        let shared = host_dir_of(host_spec, fuse);
        assert!(
            !shared.is_empty(),
            "csi-{short}: the socket directory is not a hostPath"
        );
        assert_eq!(shared, host_dir_of(node_spec, driver), "csi-{short}");
    }

    // Host-network pods share the node's ports: no two may claim the same one.
    let mut ports: BTreeMap<i64, String> = BTreeMap::new();
    for obj in &docs {
        let Some(spec) = pod_spec(obj) else { continue };
        let mut claimed: Vec<(i64, String)> = Vec::new();
        if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
            for c in containers(spec) {
                for p in list(c, "/ports") {
                    claimed.push((
                        p.get("containerPort").and_then(Value::as_i64).unwrap(),
                        format!("{} {}", name(obj), text(c, "/name")),
                    ));
                }
                // Listening addresses in flags count too, declared or not.
                for arg in strings(c, "/args") {
                    if let Some((_, value)) = arg.split_once('=')
                        && (arg.starts_with("--http-endpoint")
                            || arg.starts_with("--metrics-address")
                            || arg.starts_with("--health-port"))
                    {
                        let port = value.rsplit(':').next().unwrap().parse().unwrap();
                        claimed.push((port, format!("{} {} {arg}", name(obj), text(c, "/name"))));
                    }
                }
            }
        }
        let mut own = BTreeSet::new();
        for (port, by) in claimed {
            // A container's declared port and the flag that opens it are one claim.
            if !own.insert(port) {
                continue;
            }
            if let Some(other) = ports.insert(port, by.clone()) {
                panic!("host port {port} is claimed by both {other} and {by}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sidecar RBAC

/// When a sidecar needs an API rule.
#[derive(Clone, Copy, Debug)]
enum Needed {
    Always,
    /// Only when the sidecar is given this argument.
    With(&'static str),
    /// Unless the sidecar is given this argument.
    Unless(&'static str),
    /// Only when the driver's CSIDriver has `attachRequired: true`.
    WhenAttaching,
    /// Only when the pod also runs this sidecar.
    AlongWith(&'static str),
}

/// The API access each sidecar version we pin needs: `(group, resource, verbs, when)`. Taken from
/// each sidecar's `deploy/kubernetes/rbac.yaml` at that tag and the informers and clients its
/// code starts, less what it never uses: `list`/`watch`/`update` on events (client-go's event
/// recorder only creates and patches them). csi-provisioner v6 and csi-resizer v2 list and
/// watch `storage.k8s.io/v1` VolumeAttributesClasses (GA in Kubernetes 1.34; csi-resizer v1.14
/// asked for v1beta1, which 1.34 no longer serves). node-driver-registrar and livenessprobe
/// never call the API server. A new tag needs its entry here, checked against its sources.
type Rule = (&'static str, &'static str, &'static [&'static str], Needed);
const SIDECAR_RBAC: &[(&str, &str, &[Rule])] = &[
    (
        "csi-provisioner",
        "v6.1.0",
        &[
            (
                "",
                "persistentvolumes",
                &["get", "list", "watch", "create", "patch", "delete"],
                Needed::Always,
            ),
            (
                "",
                "persistentvolumeclaims",
                &["get", "list", "watch", "update"],
                Needed::Always,
            ),
            (
                "storage.k8s.io",
                "storageclasses",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            ("", "events", &["create", "patch"], Needed::Always),
            // The selected node of a WaitForFirstConsumer claim.
            ("", "nodes", &["get"], Needed::Always),
            // Topology: the informers of nodes and CSINodes.
            (
                "",
                "nodes",
                &["list", "watch"],
                Needed::With("--feature-gates=Topology=true"),
            ),
            (
                "storage.k8s.io",
                "csinodes",
                &["get", "list", "watch"],
                Needed::With("--feature-gates=Topology=true"),
            ),
            // A volume is deleted only once no VolumeAttachment uses it.
            (
                "storage.k8s.io",
                "volumeattachments",
                &["get", "list", "watch"],
                Needed::WhenAttaching,
            ),
            // Restores from a VolumeSnapshot.
            (
                "snapshot.storage.k8s.io",
                "volumesnapshots",
                &["get", "list"],
                Needed::AlongWith("csi-snapshotter"),
            ),
            (
                "snapshot.storage.k8s.io",
                "volumesnapshotcontents",
                &["get", "list"],
                Needed::AlongWith("csi-snapshotter"),
            ),
            (
                "storage.k8s.io",
                "volumeattributesclasses",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            (
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "update", "delete"],
                Needed::With("--leader-election"),
            ),
        ],
    ),
    (
        "csi-attacher",
        "v4.10.0",
        &[
            (
                "",
                "persistentvolumes",
                &["get", "list", "watch", "patch"],
                Needed::Always,
            ),
            (
                "storage.k8s.io",
                "csinodes",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            (
                "storage.k8s.io",
                "volumeattachments",
                &["get", "list", "watch", "patch"],
                Needed::Always,
            ),
            (
                "storage.k8s.io",
                "volumeattachments/status",
                &["patch"],
                Needed::Always,
            ),
            (
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "update", "delete"],
                Needed::With("--leader-election"),
            ),
        ],
    ),
    (
        "csi-resizer",
        "v2.0.0",
        &[
            (
                "",
                "persistentvolumes",
                &["get", "list", "watch", "patch"],
                Needed::Always,
            ),
            (
                "",
                "persistentvolumeclaims",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            (
                "",
                "persistentvolumeclaims/status",
                &["patch"],
                Needed::Always,
            ),
            (
                "",
                "pods",
                &["get", "list", "watch"],
                Needed::Unless("--handle-volume-inuse-error=false"),
            ),
            ("", "events", &["create", "patch"], Needed::Always),
            (
                "storage.k8s.io",
                "volumeattributesclasses",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            (
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "update", "delete"],
                Needed::With("--leader-election"),
            ),
        ],
    ),
    (
        "csi-snapshotter",
        "v8.4.0",
        &[
            ("", "events", &["create", "patch"], Needed::Always),
            (
                "snapshot.storage.k8s.io",
                "volumesnapshotclasses",
                &["get", "list", "watch"],
                Needed::Always,
            ),
            (
                "snapshot.storage.k8s.io",
                "volumesnapshotcontents",
                &["get", "list", "watch", "update", "patch"],
                Needed::Always,
            ),
            (
                "snapshot.storage.k8s.io",
                "volumesnapshotcontents/status",
                &["update", "patch"],
                Needed::Always,
            ),
            (
                "coordination.k8s.io",
                "leases",
                &["get", "list", "watch", "create", "update", "delete"],
                Needed::With("--leader-election"),
            ),
        ],
    ),
    ("csi-node-driver-registrar", "v2.15.0", &[]),
    ("livenessprobe", "v2.17.0", &[]),
];

/// The rules granted to a service account: every Role and ClusterRole bound to it.
fn granted_rules<'a>(docs: &'a [Value], namespace: &str, account: &str) -> Vec<&'a Value> {
    let mut rules = Vec::new();
    for binding in docs
        .iter()
        .filter(|d| matches!(kind(d), "RoleBinding" | "ClusterRoleBinding"))
    {
        let bound = list(binding, "/subjects").iter().any(|s| {
            text(s, "/kind") == "ServiceAccount"
                && text(s, "/name") == account
                && text(s, "/namespace") == namespace
        });
        // A RoleBinding grants only in its own namespace: the sidecars' namespaced needs
        // (leases) are in the pod's namespace.
        if !bound
            || (kind(binding) == "RoleBinding" && text(binding, "/metadata/namespace") != namespace)
        {
            continue;
        }
        let role_kind = text(binding, "/roleRef/kind");
        let role_name = text(binding, "/roleRef/name");
        let role = docs
            .iter()
            .find(|d| {
                kind(d) == role_kind
                    && name(d) == role_name
                    && (role_kind == "ClusterRole"
                        || text(d, "/metadata/namespace") == text(binding, "/metadata/namespace"))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} {} binds a missing {role_kind} {role_name}",
                    kind(binding),
                    name(binding)
                )
            });
        rules.extend(list(role, "/rules"));
    }
    rules
}

fn grants(rules: &[&Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |r: &Value, field: &str, want: &str| {
        strings(r, field).iter().any(|v| v == want || v == "*")
    };
    rules.iter().any(|r| {
        has(r, "/apiGroups", group) && has(r, "/resources", resource) && has(r, "/verbs", verb)
    })
}

#[test]
fn every_sidecar_is_granted_what_its_version_lists_and_watches() {
    let docs = render(&deploy_dir(), "overlays/tke");
    let mut failures = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut checked = 0;
    for obj in &docs {
        let Some(spec) = pod_spec(obj) else { continue };
        let namespace = text(obj, "/metadata/namespace");
        let account = text(spec, "/serviceAccountName");
        let rules = granted_rules(&docs, namespace, account);
        let pod_images: Vec<&str> = containers(spec)
            .map(|c| image_name_and_tag(text(c, "/image")).0)
            .collect();
        let driver = text(obj, "/metadata/labels/app.kubernetes.io~1name");
        let attaching = docs.iter().any(|d| {
            kind(d) == "CSIDriver"
                && text(d, "/metadata/labels/app.kubernetes.io~1name") == driver
                && d.pointer("/spec/attachRequired") == Some(&Value::Bool(true))
        });
        for c in containers(spec) {
            let (image, tag) = image_name_and_tag(text(c, "/image"));
            if OUR_IMAGES.contains(&image) {
                continue;
            }
            let at = format!("{} {}/{image}:{tag}", name(obj), text(c, "/name"));
            let Some((_, _, needs)) = SIDECAR_RBAC
                .iter()
                .find(|(i, t, _)| *i == image && *t == tag)
            else {
                failures.insert(format!(
                    "{at}: no SIDECAR_RBAC entry for this version; add what its rbac.yaml and \
                     code need"
                ));
                continue;
            };
            used.insert(format!("{image}:{tag}"));
            let args = strings(c, "/args");
            for (group, resource, verbs, when) in *needs {
                let needed = match when {
                    Needed::Always => true,
                    Needed::With(arg) => args.iter().any(|a| a == arg),
                    Needed::Unless(arg) => !args.iter().any(|a| a == arg),
                    Needed::WhenAttaching => attaching,
                    Needed::AlongWith(other) => pod_images.contains(other),
                };
                if !needed {
                    continue;
                }
                checked += 1;
                let missing: Vec<&str> = verbs
                    .iter()
                    .copied()
                    .filter(|v| !grants(&rules, group, resource, v))
                    .collect();
                if !missing.is_empty() {
                    let group = if group.is_empty() { "core" } else { group };
                    failures.insert(format!(
                        "{at}: service account {namespace}/{account} may not {missing:?} \
                         {group}/{resource}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "sidecar RBAC:\n{}",
        failures.into_iter().collect::<Vec<_>>().join("\n")
    );
    assert!(checked > 50, "only {checked} rules checked");
    assert_eq!(
        used.len(),
        SIDECAR_RBAC.len(),
        "every SIDECAR_RBAC entry is a version we pin: {used:?}"
    );
}

/// What our own drivers ask the API server, by image and `--mode`: csi-cbs's controller lists
/// the Nodes for their zones (a volume with no zone goes where the Nodes are); the FUSE drivers'
/// node plugins get the PV of a volume published without keys (`Cluster::pv_publish_secret`: an
/// empty publish Secret is told from none). Nothing else of ours calls the API: node plugins read
/// instance metadata (a node name as NODE_ID, which needs `get` on `nodes`, is only for Tencent's
/// own DaemonSets, whose RBAC has it).
const DRIVER_RBAC: &[(&str, &str, Rule)] = &[
    (
        "csi-cbs",
        "--mode=controller",
        ("", "nodes", &["list"], Needed::Always),
    ),
    (
        "csi-cos",
        "--mode=node",
        ("", "persistentvolumes", &["get"], Needed::Always),
    ),
    (
        "csi-goosefs",
        "--mode=node",
        ("", "persistentvolumes", &["get"], Needed::Always),
    ),
];

#[test]
fn our_drivers_are_granted_what_they_call() {
    let docs = render(&deploy_dir(), "overlays/tke");
    let mut checked = 0;
    for obj in &docs {
        let Some(spec) = pod_spec(obj) else { continue };
        let namespace = text(obj, "/metadata/namespace");
        let account = text(spec, "/serviceAccountName");
        let rules = granted_rules(&docs, namespace, account);
        for c in containers(spec) {
            let (image, _) = image_name_and_tag(text(c, "/image"));
            let args = strings(c, "/args");
            for (ours, mode, (group, resource, verbs, _)) in DRIVER_RBAC {
                if image != *ours || !args.iter().any(|a| a == mode) {
                    continue;
                }
                for verb in *verbs {
                    checked += 1;
                    assert!(
                        grants(&rules, group, resource, verb),
                        "{} {}: service account {namespace}/{account} may not {verb} {resource}",
                        name(obj),
                        text(c, "/name")
                    );
                }
            }
        }
    }
    assert!(checked > 0, "no csi-cbs controller found in deploy/");
}
