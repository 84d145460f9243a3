//! The man pages and shell completions the Debian package ships, generated from the command
//! line definition so they can never drift from it. `scripts/package` runs this before
//! `cargo deb`:
//!
//!   cargo run --example package_docs -- <dir>
//!
//! writes <dir>/man/staging-refresh.1 (plus one page per subcommand, staging-refresh-run.1, ...)
//! and <dir>/completions/{staging-refresh.bash, _staging-refresh, staging-refresh.fish}.

use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};
use staging_refresh::cli::Cli;
use staging_refresh::config::DEFAULT_PATH;

const NAME: &str = "staging-refresh";

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: package_docs <dir>"));
    let cmd = Cli::command();

    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    // One page per subcommand, then the main page again with the sections an operator looks
    // for that clap does not know about.
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut page = std::fs::File::create(man.join(format!("{NAME}.1")))?;
    main_page(cmd.clone(), &mut page)?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), NAME, &completions)?;
    }
    Ok(())
}

fn main_page(cmd: clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(cmd);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;

    let mut extra = Roff::new();
    section(
        &mut extra,
        "EXIT STATUS",
        &[
            ("0", "Success."),
            (
                "1",
                "The refresh (or command) failed; staging is left serving its previous data.",
            ),
            (
                "2",
                "Usage or configuration error; the message names the key.",
            ),
            (
                "3",
                "Refused by a guard (no opt-in marker, target equals source); nothing changed.",
            ),
            ("4", "Another refresh holds the lock."),
        ],
    );
    section(
        &mut extra,
        "ENVIRONMENT",
        &[
            (
                "STAGING_REFRESH_CONFIG",
                "The configuration file, in place of --config.",
            ),
            (
                "STAGING_REFRESH__<SECTION>__<KEY>",
                "Overrides one configuration key (nested: STAGING_REFRESH__MEDIA__SOURCE__BUCKET).",
            ),
        ],
    );
    section(
        &mut extra,
        "FILES",
        &[
            (
                DEFAULT_PATH,
                "The configuration (a conffile, mode 0640, group staging-refresh: it holds secrets).",
            ),
            (
                "/var/lib/staging-refresh",
                "State: the last run's report (state.json), the lock file, the maintenance flag.",
            ),
            (
                "/usr/share/staging-refresh",
                "Files for other programs: the polkit rule that lets the daemon stop and start the \
                 staging backend, Prometheus alert rules, the Grafana dashboard.",
            ),
        ],
    );
    extra.control("SH", ["SEE ALSO"]);
    extra.text([roman(
        "/usr/share/doc/staging-refresh/README.md, systemctl(1), journalctl(1)",
    )]);
    extra.to_writer(w)?;

    man.render_version_section(w)
}

/// A man page section of tagged paragraphs: each term in bold, its meaning below.
fn section(roff: &mut Roff, title: &str, items: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, meaning) in items {
        roff.control("TP", [])
            .text([bold(*term)])
            .text([roman(*meaning)]);
    }
}
