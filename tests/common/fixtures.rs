//! The standard test images: a busybox root filesystem taken from the host's
//! Debian `busybox-static`, and images built on it that cover every pull path
//! (compressions, manifest formats, indexes, whiteouts, users, malicious
//! layers). Builds bytes only; pushing is `push.rs`.

use std::path::Path;

use super::image::{Format, Image, ImageBuilder, Index, Platform};
use super::layer::{Compression, Layer, LayerBuilder};
use super::push::{Pushed, PushedIndex, push, push_index};
use super::registry::Registry;

const HOST_BUSYBOX: &str = "/bin/busybox";

/// Applets linked to `/bin/busybox` in the test root filesystem.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "ls", "cat", "echo", "id", "sleep", "true", "false", "env", "stat", "touch",
    "mkdir", "rm", "ps", "printf", "test", "[", "wc", "head", "tail", "grep", "sed", "hostname",
    "whoami", "date", "kill", "chmod", "chown", "ln", "cp", "mv", "pwd", "uname", "readlink",
    "mount", "dd", "find", "xargs", "nc", "wget", "tee", "yes", "seq", "sync",
];

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1002:1002:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

pub const GROUP: &str = "root:x:0:
daemon:x:1:
www-data:x:33:
app:x:1002:
grp1003:x:1003:
nogroup:x:65534:
";

/// The busybox root filesystem: `/bin/busybox` from the host plus applet
/// symlinks, `/etc/passwd` and `/etc/group` (root, www-data 33, app 1002),
/// and the usual top-level directories.
pub fn busybox_layer_builder() -> LayerBuilder {
    let busybox = std::fs::read(HOST_BUSYBOX).unwrap_or_else(|e| {
        panic!(
            "reading {HOST_BUSYBOX}: {e}: install Debian's busybox-static package (hack/install-deps.sh)"
        )
    });
    let mut b = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", busybox, 0o755);
    for applet in APPLETS {
        b = b.symlink(&format!("bin/{applet}"), "busybox");
    }
    b.dir("dev", 0o755)
        .dir("etc", 0o755)
        .file("etc/passwd", PASSWD, 0o644)
        .file("etc/group", GROUP, 0o644)
        .file("etc/hostname", "busybox\n", 0o644)
        .dir("home", 0o755)
        .dir_owned("home/app", 0o755, 1002, 1002)
        .dir("proc", 0o755)
        .dir("root", 0o700)
        .dir("sys", 0o755)
        .dir("tmp", 0o1777)
        .dir("usr", 0o755)
        .symlink("usr/bin", "../bin")
        .dir("var", 0o755)
        .dir_owned("var/www", 0o755, 33, 33)
}

pub fn busybox_layer(compression: Compression) -> Layer {
    busybox_layer_builder().build(compression)
}

fn busybox_base() -> ImageBuilder {
    ImageBuilder::new()
        .cmd(&["sh"])
        .label("org.crius.test", "busybox")
}

/// `busybox`: one gzip layer, OCI manifest.
pub fn busybox_image() -> Image {
    busybox_base()
        .layer(busybox_layer(Compression::Gzip))
        .build()
}

/// busybox as Docker schema2 (Docker media types everywhere).
pub fn busybox_docker_image() -> Image {
    busybox_base()
        .format(Format::Docker)
        .layer(busybox_layer(Compression::Gzip))
        .label("org.crius.test", "busybox-docker")
        .build()
}

/// A small layer holding one file `/<name>` with `content`.
pub fn file_layer(name: &str, content: &str, compression: Compression) -> Layer {
    LayerBuilder::new()
        .file(name, content, 0o644)
        .build(compression)
}

/// `fivelayer`: busybox plus four one-file layers.
pub fn fivelayer_image() -> Image {
    let mut b = busybox_base()
        .label("org.crius.test", "fivelayer")
        .layer(busybox_layer(Compression::Gzip));
    for i in 1..5 {
        b = b.layer(file_layer(
            &format!("layer-{i}"),
            &format!("layer {i}\n"),
            Compression::Gzip,
        ));
    }
    b.build()
}

/// Every layer zstd-compressed.
pub fn zstd_image() -> Image {
    busybox_base()
        .label("org.crius.test", "zstd")
        .layer(busybox_layer(Compression::Zstd))
        .layer(file_layer("zstd", "zstd\n", Compression::Zstd))
        .build()
}

/// Every layer an uncompressed tar.
pub fn uncompressed_image() -> Image {
    busybox_base()
        .label("org.crius.test", "uncompressed")
        .layer(busybox_layer(Compression::None))
        .layer(file_layer("plain", "plain\n", Compression::None))
        .build()
}

/// `whiteouts`: busybox, then three layers. Expected merged view:
/// `/data/keep`, `/data/added`, `/data/tmp2` = "again\n", no `/data/tmp1`;
/// `/olddir` holds only `new` (opaque); no `/gone-dir`; no `/etc/motd`.
pub fn whiteouts_image() -> Image {
    let base = LayerBuilder::new()
        .dir("data", 0o755)
        .file("data/keep", "keep\n", 0o644)
        .file("data/tmp1", "1\n", 0o644)
        .file("data/tmp2", "2\n", 0o644)
        .dir("olddir", 0o755)
        .file("olddir/a", "a\n", 0o644)
        .file("olddir/b", "b\n", 0o644)
        .dir("olddir/sub", 0o755)
        .file("olddir/sub/c", "c\n", 0o644)
        .dir("gone-dir", 0o755)
        .file("gone-dir/x", "x\n", 0o644)
        .file("etc/motd", "hello\n", 0o644);
    let deletes = LayerBuilder::new()
        .dir("data", 0o755)
        .whiteout("data/tmp1")
        .whiteout("data/tmp2")
        .file("data/added", "added\n", 0o644)
        .dir("olddir", 0o755)
        .opaque("olddir")
        .file("olddir/new", "new\n", 0o644)
        .whiteout("gone-dir")
        .dir("etc", 0o755)
        .whiteout("etc/motd");
    let readd = LayerBuilder::new()
        .dir("data", 0o755)
        .file("data/tmp2", "again\n", 0o644);
    busybox_base()
        .label("org.crius.test", "whiteouts")
        .layer(busybox_layer(Compression::Gzip))
        .layer(base.build(Compression::Gzip))
        .layer(deletes.build(Compression::Gzip))
        .layer(readd.build(Compression::Gzip))
        .build()
}

/// busybox with config `User` set to `user` (`1002`, `www-data`, `1003:1003`).
pub fn user_image(user: &str) -> Image {
    busybox_base()
        .label("org.crius.test", &format!("user {user}"))
        .user(user)
        .layer(busybox_layer(Compression::Gzip))
        .build()
}

/// An image with every config field set, for checks of what the daemon reports.
pub fn configured_image() -> Image {
    busybox_base()
        .layer(busybox_layer(Compression::Gzip))
        .label("org.crius.test", "configured")
        .env("GREETING=hello")
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo $GREETING"])
        .working_dir("/tmp")
        .stop_signal("SIGQUIT")
        .build()
}

/// Deterministic incompressible bytes (xorshift64), for layers that take a
/// while through a throttled proxy.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// busybox plus a layer with `len` random bytes in `/random.bin`.
pub fn big_image(seed: u64, len: usize) -> Image {
    busybox_base()
        .label("org.crius.test", &format!("big {seed}"))
        .layer(busybox_layer(Compression::Gzip))
        .layer(
            LayerBuilder::new()
                .file("random.bin", random_bytes(seed, len), 0o644)
                .build(Compression::Gzip),
        )
        .build()
}

/// A single uncompressed layer of `len` random bytes in `/payload`: flipping
/// a byte of the stored blob past the tar header changes its digest but still
/// unpacks, so only digest verification can catch it.
pub fn single_plain_layer_image(seed: u64, len: usize) -> Image {
    ImageBuilder::new()
        .label("org.crius.test", &format!("plain {seed}"))
        .layer(
            LayerBuilder::new()
                .file("payload", random_bytes(seed, len), 0o644)
                .build(Compression::None),
        )
        .build()
}

/// A multi-platform index: linux/arm64/v8, linux/arm/v7, linux/amd64 and
/// linux/ppc64le, in that order. The entry for the host's architecture is
/// busybox; the others hold one file naming their platform.
pub fn multiplatform_index(format: Format) -> Index {
    let host = Platform::host();
    let platforms = [
        Platform::new("linux", "arm64", Some("v8")),
        Platform::new("linux", "arm", Some("v7")),
        Platform::new("linux", "amd64", None),
        Platform::new("linux", "ppc64le", None),
    ];
    let images = platforms
        .into_iter()
        .map(|p| {
            let tag = format!("{}/{}", p.os, p.architecture);
            let b = ImageBuilder::new()
                .format(format)
                .label("org.crius.test.platform", &tag);
            if p.architecture == host.architecture {
                b.platform(p)
                    .cmd(&["sh"])
                    .layer(busybox_layer(Compression::Gzip))
                    .build()
            } else {
                b.platform(p)
                    .layer(file_layer("platform", &tag, Compression::Gzip))
                    .build()
            }
        })
        .collect();
    Index::new(format, images)
}

/// One malicious layer: what it tries, the entry name the daemon's error
/// must mention, and the image.
#[derive(Debug)]
pub struct Malicious {
    pub kind: &'static str,
    pub entry: String,
    pub image: Image,
}

/// One single-layer image per escape kind. Each starts with a harmless file
/// so the unpacker is mid-layer when it meets the bad entry. `outside` is a
/// directory the test owns: every escape aims there (or at `victim`, an
/// existing file in it), so the test can check nothing was written.
pub fn malicious_images(outside: &Path, victim: &Path) -> Vec<Malicious> {
    let outside = outside.display().to_string();
    let victim = victim.display().to_string();
    let dotdots = "../".repeat(32);
    let out_rel = outside.trim_start_matches('/');
    let base = || {
        LayerBuilder::new()
            .file("harmless", "harmless\n", 0o644)
            .dir("sub", 0o755)
    };
    let cases: Vec<(&'static str, String, LayerBuilder)> = vec![
        {
            let name = format!("{dotdots}{out_rel}/dotdot-escape");
            (
                "dot-dot path",
                name.clone(),
                base().raw_file(&name, "escaped\n"),
            )
        },
        {
            let name = "../escape-one-up".to_string();
            (
                "dot-dot path one level up",
                name.clone(),
                base().raw_file(&name, "escaped\n"),
            )
        },
        {
            let name = format!("{outside}/absolute-escape");
            (
                "absolute path",
                name.clone(),
                base().raw_file(&name, "escaped\n"),
            )
        },
        {
            let name = "evil-link/through-absolute-symlink".to_string();
            (
                "through absolute symlink",
                name.clone(),
                base()
                    .raw_symlink("evil-link", &outside)
                    .raw_file(&name, "escaped\n"),
            )
        },
        {
            let name = "rel-link/through-relative-symlink".to_string();
            (
                "through relative symlink",
                name.clone(),
                base()
                    .raw_symlink("rel-link", &format!("{dotdots}{out_rel}"))
                    .raw_file(&name, "escaped\n"),
            )
        },
        {
            let name = "hardlink-absolute".to_string();
            (
                "hardlink to absolute path outside",
                name.clone(),
                base().raw_hardlink(&name, &victim),
            )
        },
        {
            let name = "hardlink-dotdot".to_string();
            let target = format!("{dotdots}{}", victim.trim_start_matches('/'));
            (
                "hardlink through ..",
                name.clone(),
                base().raw_hardlink(&name, &target),
            )
        },
    ];
    cases
        .into_iter()
        .map(|(kind, entry, layer)| Malicious {
            kind,
            entry,
            image: ImageBuilder::new()
                .label("org.crius.test.malicious", kind)
                .layer(layer.build(Compression::Gzip))
                .build(),
        })
        .collect()
}

/// Repository/tag names of the standard images pushed by [`push_standard_images`].
#[derive(Debug)]
pub struct StandardImages {
    pub busybox: Pushed,
    pub busybox_docker: Pushed,
    pub fivelayer: Pushed,
    pub zstd: Pushed,
    pub uncompressed: Pushed,
    pub whiteouts: Pushed,
    pub user_1002: Pushed,
    pub user_www_data: Pushed,
    pub user_1003: Pushed,
    pub multi_oci: PushedIndex,
    pub multi_docker: PushedIndex,
}

/// Pushes every standard image to `registry`.
pub async fn push_standard_images(registry: &Registry) -> StandardImages {
    StandardImages {
        busybox: push(registry, "busybox", "latest", &busybox_image()).await,
        busybox_docker: push(
            registry,
            "busybox-docker",
            "latest",
            &busybox_docker_image(),
        )
        .await,
        fivelayer: push(registry, "fivelayer", "latest", &fivelayer_image()).await,
        zstd: push(registry, "zstd", "latest", &zstd_image()).await,
        uncompressed: push(registry, "uncompressed", "latest", &uncompressed_image()).await,
        whiteouts: push(registry, "whiteouts", "latest", &whiteouts_image()).await,
        user_1002: push(registry, "users", "1002", &user_image("1002")).await,
        user_www_data: push(registry, "users", "www-data", &user_image("www-data")).await,
        user_1003: push(registry, "users", "1003-1003", &user_image("1003:1003")).await,
        multi_oci: push_index(registry, "multi", "oci", &multiplatform_index(Format::Oci)).await,
        multi_docker: push_index(
            registry,
            "multi",
            "docker",
            &multiplatform_index(Format::Docker),
        )
        .await,
    }
}
