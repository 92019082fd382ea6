//! The options table rendered: `cos-fuse mount --help`'s lines and the README's table.

use super::{Csi, OPTIONS};

/// The options `cos-fuse mount -o` takes, a line each, for `--help`.
pub fn help() -> String {
    let lines: Vec<String> = OPTIONS
        .iter()
        .filter(|o| o.served())
        .map(|o| format!("{:<26} {}", o.usage(), o.help))
        .collect();
    lines.join("\n")
}

/// The README's table of options (csi-cos section), header included, a line per row: a row per
/// option, then one for every other name.
pub fn readme_table() -> Vec<String> {
    let mut lines = vec![
        "| option | value | cos-fuse | csi-cos `additional_args` |".to_owned(),
        "|---|---|---|---|".to_owned(),
    ];
    for option in OPTIONS {
        let mut names = format!("`{}`", option.usage());
        for alias in option.aliases {
            names.push_str(&format!(", `{alias}`"));
        }
        let effect = if option.served() {
            option.help.to_owned()
        } else {
            format!("not a cos-fuse option: {}", option.help)
        };
        lines.push(format!(
            "| {names} | {} | {effect} | {} |",
            option.kind().describe(),
            csi_cell(option.csi)
        ));
    }
    lines.push(format!(
        "| anything else | | refused as unknown | {} |",
        csi_cell(Csi::UNKNOWN)
    ));
    lines
}

pub(super) fn csi_cell(csi: Csi) -> String {
    match csi {
        Csi::Acts => "accepted".to_owned(),
        Csi::Ignored(why) => format!("accepted, named in a warning, changes nothing: {why}"),
        Csi::Refused(why) => format!("refused: {why}"),
    }
}
