//! What stands for each kind of option value in usage lines, errors and the README.

use super::{Kind, Unit};

impl Kind {
    /// What stands for the value in `name=VALUE` (also in error messages).
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Flag => "",
            Kind::Integer | Kind::Id => "N",
            Kind::Mode => "022",
            Kind::Size(Unit::KiB) => "KiB",
            Kind::Size(Unit::MiB) => "MiB",
            Kind::Seconds => "SECONDS",
            Kind::Path => "PATH",
            Kind::Text(placeholder) => placeholder,
        }
    }

    /// What a value must be, after "needs".
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Flag => "no value",
            Kind::Integer => "a whole number",
            Kind::Id => "a whole number up to 4294967295",
            Kind::Mode => "an octal mode up to 777",
            Kind::Size(Unit::KiB) => "a size: a whole number of KiB, or with a unit (512KiB, 4MiB)",
            Kind::Size(Unit::MiB) => {
                "a size: a whole number of MiB, or with a unit (512MiB, 20GiB)"
            }
            Kind::Seconds => "a whole number of seconds",
            Kind::Path => "a path",
            Kind::Text(_) => "a value",
        }
    }

    /// The kind in a word or two, for the README.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Flag => "flag",
            Kind::Integer => "integer",
            Kind::Id => "user or group ID",
            Kind::Mode => "octal mask",
            Kind::Size(Unit::KiB) => "size (KiB, or 4MiB)",
            Kind::Size(Unit::MiB) => "size (MiB, or 20GiB)",
            Kind::Seconds => "seconds",
            Kind::Path => "path",
            Kind::Text(_) => "text",
        }
    }
}
