//! The image config `User` field as CRI's `Image.uid` / `Image.username`.
//!
//! Kubelet uses these to enforce `runAsNonRoot` before creating a container,
//! so the split must match containerd's: the part before `:` is the user; a
//! number is a uid, anything else a name resolved later inside the rootfs.

/// What the image says to run as, without the group part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// No `User` set: the runtime default (root).
    Unset,
    Uid(u32),
    Name(String),
}

pub fn parse_image_user(user: &str) -> ImageUser {
    let user_part = user.split(':').next().unwrap_or("").trim();
    if user_part.is_empty() {
        return ImageUser::Unset;
    }
    match user_part.parse::<u32>() {
        Ok(uid) => ImageUser::Uid(uid),
        Err(_) => ImageUser::Name(user_part.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_image_user(""), ImageUser::Unset);
        assert_eq!(parse_image_user("1002"), ImageUser::Uid(1002));
        assert_eq!(parse_image_user("1003:1003"), ImageUser::Uid(1003));
        assert_eq!(
            parse_image_user("www-data"),
            ImageUser::Name("www-data".into())
        );
        assert_eq!(parse_image_user("app:staff"), ImageUser::Name("app".into()));
        assert_eq!(parse_image_user(":100"), ImageUser::Unset);
        // Beyond u32 is not a uid; it stays a name and fails resolution later.
        assert_eq!(
            parse_image_user("99999999999"),
            ImageUser::Name("99999999999".into())
        );
    }
}
