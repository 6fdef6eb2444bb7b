//! The container's process as Kubernetes documents it and containerd builds
//! it: argv from CRI command/args merged with the image Entrypoint/Cmd, the
//! environment, the working directory and the stop signal.
//!
//! Pure functions over our own types: no proto types, no filesystem, no
//! user lookup (the caller passes the passwd home). Resolving the working
//! directory inside the rootfs and creating it belong to the rootfs code.

use std::collections::HashMap;
use std::str::FromStr;

use nix::sys::signal::Signal;

/// containerd's `oci.WithDefaultPathEnv`, used when neither the image nor
/// the CRI config sets PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// glibc's SIGRTMIN. The kernel's first real-time signal is 32, but glibc
/// (and so systemd, whose images say `STOPSIGNAL SIGRTMIN+3`) reserves two,
/// and moby/sys/signal, which containerd parses STOPSIGNAL with, hard-codes
/// 34. Taking it from our own libc would make the meaning of an image's
/// STOPSIGNAL depend on whether crius was linked against glibc or musl (35).
const SIGRTMIN: i32 = 34;

/// Why the container's process could not be built; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error(
        "no command: neither the container's command/args nor the image's Entrypoint/Cmd give one"
    )]
    NoCommand,
    #[error(
        "args: the program to run (first of command/args, or of the image's Entrypoint/Cmd) is an empty string"
    )]
    EmptyProgram,
    #[error("args: {arg:?} contains a NUL byte")]
    ArgNul { arg: String },
    #[error("env: {entry:?} contains a NUL byte")]
    EnvNul { entry: String },
    #[error("env: {entry:?} from the {from} has an empty name")]
    EnvEmptyKey { entry: String, from: &'static str },
    #[error("env: name {key:?} in the container's envs contains '=', which cannot be in a name")]
    EnvKeyEquals { key: String },
    #[error("working_dir {dir:?} must be absolute (from the {from})")]
    WorkingDirRelative { dir: String, from: &'static str },
    #[error("working_dir {dir:?} contains a NUL byte (from the {from})")]
    WorkingDirNul { dir: String, from: &'static str },
    #[error(
        "stop signal {signal:?} is not a signal (from the {from}); use a name (SIGTERM or TERM), a number (15), or SIGRTMIN+n / SIGRTMAX-n"
    )]
    StopSignal { signal: String, from: &'static str },
}

const CRI_CONFIG: &str = "container config";
const IMAGE_CONFIG: &str = "image config";

/// Kubernetes rules: CRI `command` replaces the image Entrypoint AND drops
/// the image Cmd; CRI `args` alone replace Cmd (Entrypoint kept); neither →
/// Entrypoint + Cmd. Empty result → error.
///
/// As containerd's `WithProcessArgs`: an image Entrypoint of exactly `[""]`
/// (what `docker commit`/`--entrypoint ""` records to clear it) counts as
/// no Entrypoint, and `null` and `[]` are the same.
pub fn args(
    command: &[String],
    args: &[String],
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Result<Vec<String>, ProcessError> {
    let mut out = Vec::new();
    if command.is_empty() {
        let entrypoint = entrypoint.unwrap_or_default();
        if !matches!(entrypoint, [only] if only.is_empty()) {
            out.extend_from_slice(entrypoint);
        }
        if args.is_empty() {
            out.extend_from_slice(cmd.unwrap_or_default());
        } else {
            out.extend_from_slice(args);
        }
    } else {
        out.extend_from_slice(command);
        out.extend_from_slice(args);
    }
    if let Some(arg) = out.iter().find(|a| a.contains('\0')) {
        return Err(ProcessError::ArgNul { arg: arg.clone() });
    }
    match out.first() {
        None => Err(ProcessError::NoCommand),
        // execve("") fails with ENOENT deep inside the runtime; say it here.
        Some(program) if program.is_empty() => Err(ProcessError::EmptyProgram),
        Some(_) => Ok(out),
    }
}

/// The environment, built in containerd's order and with its override
/// rule, then HOME added as runc adds it at exec time:
///
/// 1. `PATH=`[`DEFAULT_PATH`], then `TERM=xterm` when `tty`, then
///    `HOSTNAME=<hostname>` (containerd sets these before the image env, so
///    the image or the CRI envs may override all three);
/// 2. the image `Env`, then the CRI envs. A key seen again replaces the
///    value **in place**: the variable keeps the position where it first
///    appeared and the last value wins. (containerd only replaces keys from
///    step 1 in place and appends a duplicate for an image key that a CRI
///    env overrides, relying on runc to keep the last; the values are the
///    same.)
/// 3. `HOME=<home>` (`/` when `home` is empty) when HOME is absent or
///    empty, as runc does from the user's passwd entry.
///
/// An image entry without `=` is Docker's "unset": it removes any earlier
/// variable of that name (even PATH) and is itself dropped, never kept as
/// an empty variable. Names must be non-empty, CRI names must not contain
/// `=` (`A=B` → `C` would silently become `A` = `B=C`), and no entry may
/// contain NUL (execve would cut it short).
///
/// `hostname` is the pod's hostname; containerd substitutes the node's when
/// the pod gives none, which is the caller's business.
pub fn env(
    image_env: &[String],
    cri_env: &[(String, String)],
    hostname: &str,
    home: &str,
    tty: bool,
) -> Result<Vec<String>, ProcessError> {
    let mut env = Env::default();
    env.set("PATH", format!("PATH={DEFAULT_PATH}"))?;
    if tty {
        env.set("TERM", "TERM=xterm".to_owned())?;
    }
    env.set("HOSTNAME", format!("HOSTNAME={hostname}"))?;
    for entry in image_env {
        match entry.split_once('=') {
            None => {
                no_nul(entry)?;
                env.unset(entry);
            }
            Some(("", _)) => {
                return Err(ProcessError::EnvEmptyKey {
                    entry: entry.clone(),
                    from: IMAGE_CONFIG,
                });
            }
            Some((key, _)) => env.set(key, entry.clone())?,
        }
    }
    for (key, value) in cri_env {
        let entry = format!("{key}={value}");
        if key.is_empty() {
            return Err(ProcessError::EnvEmptyKey {
                entry,
                from: CRI_CONFIG,
            });
        }
        if key.contains('=') {
            return Err(ProcessError::EnvKeyEquals { key: key.clone() });
        }
        env.set(key, entry)?;
    }
    if env.get("HOME").is_none_or(str::is_empty) {
        let home = if home.is_empty() { "/" } else { home };
        env.set("HOME", format!("HOME={home}"))?;
    }
    Ok(env.slots.into_iter().flatten().collect())
}

fn no_nul(entry: &str) -> Result<(), ProcessError> {
    if entry.contains('\0') {
        return Err(ProcessError::EnvNul {
            entry: entry.to_owned(),
        });
    }
    Ok(())
}

/// Ordered environment with replace-in-place; an unset leaves a hole so a
/// later set of the same name returns to its first position, as Docker's
/// `ReplaceOrAppendEnvValues` does.
#[derive(Debug, Default)]
struct Env {
    slots: Vec<Option<String>>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, key: &str, entry: String) -> Result<(), ProcessError> {
        no_nul(&entry)?;
        match self.index.get(key) {
            Some(&i) => self.slots[i] = Some(entry),
            None => {
                self.index.insert(key.to_owned(), self.slots.len());
                self.slots.push(Some(entry));
            }
        }
        Ok(())
    }

    fn unset(&mut self, key: &str) {
        if let Some(&i) = self.index.get(key) {
            self.slots[i] = None;
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        let entry = self.slots[*self.index.get(key)?].as_deref()?;
        entry.split_once('=').map(|(_, v)| v)
    }
}

/// CRI working_dir, else image WorkingDir, else "/"; must be absolute;
/// normalised lexically (no `..` above /), as Go's `filepath.Clean`.
///
/// Lexical only: symlinks are resolved later, inside the rootfs, by the
/// code that creates the directory (CVE regression: `/proc/self/fd/<n>`).
pub fn working_dir(cri: &str, image: Option<&str>) -> Result<String, ProcessError> {
    let (dir, source) = match (cri, image) {
        ("", None | Some("")) => return Ok("/".to_owned()),
        ("", Some(image)) => (image, IMAGE_CONFIG),
        (cri, _) => (cri, CRI_CONFIG),
    };
    if dir.contains('\0') {
        return Err(ProcessError::WorkingDirNul {
            dir: dir.to_owned(),
            from: source,
        });
    }
    if !dir.starts_with('/') {
        return Err(ProcessError::WorkingDirRelative {
            dir: dir.to_owned(),
            from: source,
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            // `..` at the root stays at the root, as the kernel resolves it.
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Stop signal: CRI `stop_signal`, else image StopSignal, else SIGTERM, as
/// a signal number.
///
/// Both take moby/sys/signal's forms (containerd's parser): a number, or a
/// name with or without `SIG`, in any case, including the aliases IOT, CLD
/// and POLL and `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n`. An empty CRI value
/// or `RUNTIME_DEFAULT` (the CRI enum's zero value) means "not given".
/// Unlike moby, numbers must be real signals (1..=SIGRTMAX), and RTMIN+n /
/// RTMAX-n accept any n that stays within the real-time range (moby lists
/// only up to +15 / -14, which together cover the same range).
pub fn stop_signal(cri: Option<&str>, image: Option<&str>) -> Result<i32, ProcessError> {
    let cri = cri.filter(|s| !s.is_empty() && *s != "RUNTIME_DEFAULT");
    let (raw, source) = match (cri, image) {
        (Some(cri), _) => (cri, CRI_CONFIG),
        (None, Some(image)) if !image.is_empty() => (image, IMAGE_CONFIG),
        _ => return Ok(Signal::SIGTERM as i32),
    };
    parse_signal(raw).ok_or_else(|| ProcessError::StopSignal {
        signal: raw.to_owned(),
        from: source,
    })
}

fn parse_signal(raw: &str) -> Option<i32> {
    let rtmax = libc::SIGRTMAX();
    if let Ok(n) = raw.parse::<i32>() {
        return (1..=rtmax).contains(&n).then_some(n);
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |base: i32, offset: Option<&str>, sign: i32| -> Option<i32> {
        let n = match offset {
            None => base,
            // Only digits: "RTMIN+-1" or "RTMIN++1" are not signals.
            Some(o) if !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()) => {
                base.checked_add(sign.checked_mul(o.parse().ok()?)?)?
            }
            Some(_) => return None,
        };
        (SIGRTMIN..=rtmax).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return match rest {
            "" => rt(SIGRTMIN, None, 1),
            _ => rt(SIGRTMIN, Some(rest.strip_prefix('+')?), 1),
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest {
            "" => rt(rtmax, None, -1),
            _ => rt(rtmax, Some(rest.strip_prefix('-')?), -1),
        };
    }
    let name = match name {
        "IOT" => "ABRT",
        "CLD" => "CHLD",
        "POLL" => "IO",
        other => other,
    };
    Signal::from_str(&format!("SIG{name}"))
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, val)| ((*k).to_owned(), (*val).to_owned()))
            .collect()
    }

    const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    #[test]
    fn args_follow_kubernetes_rules() {
        let ep = v(&["/entry", "-e"]);
        let cmd = v(&["serve", "--port=80"]);
        let empty: Vec<String> = Vec::new();
        let blank = v(&[""]);
        #[allow(clippy::type_complexity)]
        let cases: &[(
            &str,
            &[&str],
            &[&str],
            Option<&[String]>,
            Option<&[String]>,
            Result<&[&str], ProcessError>,
        )] = &[
            (
                "neither: Entrypoint + Cmd",
                &[],
                &[],
                Some(&ep),
                Some(&cmd),
                Ok(&["/entry", "-e", "serve", "--port=80"]),
            ),
            (
                "command only: drops Entrypoint and Cmd",
                &["/bin/sh"],
                &[],
                Some(&ep),
                Some(&cmd),
                Ok(&["/bin/sh"]),
            ),
            (
                "args only: Entrypoint kept, Cmd replaced",
                &[],
                &["x", "y"],
                Some(&ep),
                Some(&cmd),
                Ok(&["/entry", "-e", "x", "y"]),
            ),
            (
                "both: command + args",
                &["/bin/sh"],
                &["-c", "true"],
                Some(&ep),
                Some(&cmd),
                Ok(&["/bin/sh", "-c", "true"]),
            ),
            (
                "image without Cmd",
                &[],
                &[],
                Some(&ep),
                None,
                Ok(&["/entry", "-e"]),
            ),
            (
                "image without Cmd, args given",
                &[],
                &["a"],
                Some(&ep),
                None,
                Ok(&["/entry", "-e", "a"]),
            ),
            (
                "Entrypoint null",
                &[],
                &[],
                None,
                Some(&cmd),
                Ok(&["serve", "--port=80"]),
            ),
            (
                "Entrypoint []",
                &[],
                &[],
                Some(&empty),
                Some(&cmd),
                Ok(&["serve", "--port=80"]),
            ),
            (
                "Entrypoint [\"\"] clears it",
                &[],
                &[],
                Some(&blank),
                Some(&cmd),
                Ok(&["serve", "--port=80"]),
            ),
            (
                "args alone, no Entrypoint: args are the program",
                &[],
                &["/bin/true"],
                None,
                Some(&cmd),
                Ok(&["/bin/true"]),
            ),
            (
                "all empty",
                &[],
                &[],
                None,
                None,
                Err(ProcessError::NoCommand),
            ),
            (
                "all empty arrays",
                &[],
                &[],
                Some(&empty),
                Some(&empty),
                Err(ProcessError::NoCommand),
            ),
            (
                "Entrypoint [\"\"] and no Cmd",
                &[],
                &[],
                Some(&blank),
                None,
                Err(ProcessError::NoCommand),
            ),
            (
                "command [\"\"]",
                &[""],
                &[],
                None,
                None,
                Err(ProcessError::EmptyProgram),
            ),
            (
                "NUL in args",
                &["/bin/sh"],
                &["a\0b"],
                None,
                None,
                Err(ProcessError::ArgNul { arg: "a\0b".into() }),
            ),
        ];
        for (name, command, cri_args, entrypoint, cmd, want) in cases {
            let got = args(&v(command), &v(cri_args), *entrypoint, *cmd);
            let want = want.clone().map(v);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn no_command_error_names_the_fields() {
        let err = args(&[], &[], None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no command: neither the container's command/args nor the image's Entrypoint/Cmd give one"
        );
    }

    #[test]
    fn env_defaults_in_containerd_order() {
        let got = env(&[], &[], "web-0", "/root", false).unwrap();
        assert_eq!(got, v(&[PATH, "HOSTNAME=web-0", "HOME=/root"]));
        let got = env(&[], &[], "web-0", "", true).unwrap();
        assert_eq!(got, v(&[PATH, "TERM=xterm", "HOSTNAME=web-0", "HOME=/"]));
    }

    #[test]
    fn env_image_then_cri_last_wins_in_place() {
        let image = v(&["A=image", "PATH=/image/bin", "B=1"]);
        let cri = kv(&[("C", "3"), ("A", "cri"), ("PATH", "/cri/bin"), ("C", "4")]);
        let got = env(&image, &cri, "h", "/home/u", false).unwrap();
        assert_eq!(
            got,
            v(&[
                "PATH=/cri/bin",
                "HOSTNAME=h",
                "A=cri",
                "B=1",
                "C=4",
                "HOME=/home/u"
            ])
        );
    }

    #[test]
    fn env_image_and_cri_may_override_hostname_term_home() {
        let image = v(&["HOSTNAME=from-image", "HOME=/img"]);
        let cri = kv(&[("TERM", "vt100")]);
        let got = env(&image, &cri, "h", "/root", true).unwrap();
        assert_eq!(
            got,
            v(&[PATH, "TERM=vt100", "HOSTNAME=from-image", "HOME=/img"])
        );
        // runc replaces an empty HOME too.
        let got = env(&[], &kv(&[("HOME", "")]), "h", "/root", false).unwrap();
        assert_eq!(got, v(&[PATH, "HOSTNAME=h", "HOME=/root"]));
        // Values may hold '=' and be empty.
        let got = env(&v(&["X=a=b", "Y="]), &[], "h", "/", false).unwrap();
        assert_eq!(got, v(&[PATH, "HOSTNAME=h", "X=a=b", "Y=", "HOME=/"]));
    }

    #[test]
    fn env_image_entry_without_equals_is_an_unset_and_dropped() {
        let image = v(&["FOO", "A=1", "TERM", "A", "B=2"]);
        let got = env(&image, &[], "h", "/root", true).unwrap();
        assert_eq!(got, v(&[PATH, "HOSTNAME=h", "B=2", "HOME=/root"]));
        // Even PATH, as Docker and containerd do.
        let got = env(&v(&["PATH"]), &[], "h", "/root", false).unwrap();
        assert_eq!(got, v(&["HOSTNAME=h", "HOME=/root"]));
        // A later set returns to the first position.
        let got = env(
            &v(&["A=1", "B=2", "A"]),
            &kv(&[("A", "3")]),
            "h",
            "/",
            false,
        )
        .unwrap();
        assert_eq!(got, v(&[PATH, "HOSTNAME=h", "A=3", "B=2", "HOME=/"]));
    }

    #[test]
    fn env_rejects_nul_and_bad_names() {
        let err = env(&[], &kv(&[("A", "B\0")]), "h", "/", false).unwrap_err();
        assert_eq!(
            err,
            ProcessError::EnvNul {
                entry: "A=B\0".into()
            }
        );
        assert_eq!(err.to_string(), "env: \"A=B\\0\" contains a NUL byte");
        assert!(matches!(
            env(&[], &kv(&[("A\0", "B")]), "h", "/", false),
            Err(ProcessError::EnvNul { .. })
        ));
        assert!(matches!(
            env(&v(&["X=\0"]), &[], "h", "/", false),
            Err(ProcessError::EnvNul { .. })
        ));
        assert!(matches!(
            env(&v(&["X\0"]), &[], "h", "/", false),
            Err(ProcessError::EnvNul { .. })
        ));
        assert!(matches!(
            env(&[], &[], "h\0", "/", false),
            Err(ProcessError::EnvNul { .. })
        ));
        assert_eq!(
            env(&[], &kv(&[("", "x")]), "h", "/", false),
            Err(ProcessError::EnvEmptyKey {
                entry: "=x".into(),
                from: CRI_CONFIG
            })
        );
        assert_eq!(
            env(&v(&["=x"]), &[], "h", "/", false),
            Err(ProcessError::EnvEmptyKey {
                entry: "=x".into(),
                from: IMAGE_CONFIG
            })
        );
        let err = env(&[], &kv(&[("A=B", "C")]), "h", "/", false).unwrap_err();
        assert_eq!(err, ProcessError::EnvKeyEquals { key: "A=B".into() });
    }

    #[test]
    fn working_dir_precedence() {
        assert_eq!(working_dir("/cri", Some("/img")).unwrap(), "/cri");
        assert_eq!(working_dir("", Some("/img")).unwrap(), "/img");
        assert_eq!(working_dir("", Some("")).unwrap(), "/");
        assert_eq!(working_dir("", None).unwrap(), "/");
        assert_eq!(working_dir("/cri", None).unwrap(), "/cri");
    }

    #[test]
    fn working_dir_is_normalised_lexically() {
        for (input, want) in [
            ("/a/../b", "/b"),
            ("/../x", "/x"),
            ("/../../..", "/"),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("/a/./b/.", "/a/b"),
            ("/a/b/../../c/..", "/"),
            ("/proc/self/fd/3", "/proc/self/fd/3"),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(working_dir(input, None).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn working_dir_must_be_absolute() {
        let err = working_dir("rel", Some("/img")).unwrap_err();
        assert_eq!(
            err,
            ProcessError::WorkingDirRelative {
                dir: "rel".into(),
                from: CRI_CONFIG
            }
        );
        assert!(
            err.to_string()
                .starts_with("working_dir \"rel\" must be absolute")
        );
        assert_eq!(
            working_dir("", Some("app")),
            Err(ProcessError::WorkingDirRelative {
                dir: "app".into(),
                from: IMAGE_CONFIG
            })
        );
        assert!(matches!(
            working_dir("./x", None),
            Err(ProcessError::WorkingDirRelative { .. })
        ));
        assert!(matches!(
            working_dir("/a\0b", None),
            Err(ProcessError::WorkingDirNul { .. })
        ));
    }

    #[test]
    fn stop_signal_precedence() {
        assert_eq!(stop_signal(None, None).unwrap(), libc::SIGTERM);
        assert_eq!(stop_signal(Some(""), Some("")).unwrap(), libc::SIGTERM);
        assert_eq!(stop_signal(None, Some("SIGQUIT")).unwrap(), libc::SIGQUIT);
        assert_eq!(
            stop_signal(Some("SIGINT"), Some("SIGQUIT")).unwrap(),
            libc::SIGINT
        );
        assert_eq!(
            stop_signal(Some(""), Some("SIGQUIT")).unwrap(),
            libc::SIGQUIT
        );
        assert_eq!(
            stop_signal(Some("RUNTIME_DEFAULT"), Some("SIGQUIT")).unwrap(),
            libc::SIGQUIT
        );
        assert_eq!(
            stop_signal(Some("RUNTIME_DEFAULT"), None).unwrap(),
            libc::SIGTERM
        );
    }

    #[test]
    fn stop_signal_forms() {
        let rtmax = libc::SIGRTMAX();
        for (input, want) in [
            ("SIGTERM", libc::SIGTERM),
            ("TERM", libc::SIGTERM),
            ("sigterm", libc::SIGTERM),
            ("Term", libc::SIGTERM),
            ("15", 15),
            ("9", libc::SIGKILL),
            ("SIGKILL", libc::SIGKILL),
            ("SIGHUP", libc::SIGHUP),
            ("USR1", libc::SIGUSR1),
            ("SIGWINCH", libc::SIGWINCH),
            ("SIGPWR", libc::SIGPWR),
            ("SIGIOT", libc::SIGABRT),
            ("CLD", libc::SIGCHLD),
            ("SIGPOLL", libc::SIGIO),
            ("SIGRTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("RTMIN+0", 34),
            ("rtmin+15", 49),
            ("SIGRTMAX", rtmax),
            ("SIGRTMAX-1", rtmax - 1),
            ("RTMAX-14", rtmax - 14),
            ("SIGRTMIN+30", 64),
            ("64", 64),
        ] {
            assert_eq!(stop_signal(Some(input), None), Ok(want), "CRI {input}");
            assert_eq!(stop_signal(None, Some(input)), Ok(want), "image {input}");
        }
    }

    #[test]
    fn stop_signal_invalid() {
        for input in [
            "SIGFOO",
            "FOO",
            "0",
            "-1",
            "65",
            "SIG",
            "SIGRTMIN-1",
            "SIGRTMIN+",
            "SIGRTMIN+-1",
            "SIGRTMIN++1",
            "SIGRTMIN+31",
            "SIGRTMAX+1",
            "SIGRTMAX-31",
            "SIGRTMIN+ 3",
            " SIGTERM",
            "SIGSIGTERM",
        ] {
            assert!(
                matches!(
                    stop_signal(Some(input), None),
                    Err(ProcessError::StopSignal { .. })
                ),
                "{input}"
            );
        }
        let err = stop_signal(Some("SIGFOO"), Some("SIGTERM")).unwrap_err();
        assert_eq!(
            err,
            ProcessError::StopSignal {
                signal: "SIGFOO".into(),
                from: CRI_CONFIG
            }
        );
        assert!(
            err.to_string()
                .starts_with("stop signal \"SIGFOO\" is not a signal")
        );
        // A bad image value is an error even though SIGTERM would do: the
        // image author asked for something we cannot deliver.
        assert_eq!(
            stop_signal(None, Some("SIGFOO")),
            Err(ProcessError::StopSignal {
                signal: "SIGFOO".into(),
                from: IMAGE_CONFIG
            })
        );
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn rtmin_matches_glibc() {
        assert_eq!(libc::SIGRTMIN(), SIGRTMIN);
        assert_eq!(libc::SIGRTMAX(), 64);
    }
}
