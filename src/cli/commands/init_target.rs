//! `init-target`: the opt-in markers on the staging database and media bucket.

use crate::config::Config;
use crate::database::{Server, markers};
use crate::error::Exit;
use crate::media::{self, Mirror};

pub async fn run(config: &Config) -> anyhow::Result<Exit> {
    let server = Server::new(&config.database.url);
    let client = server.connect(None).await?;
    markers::mark(&server, &client, &config.database.name).await?;
    say!(
        "marked database {} on {} as a refresh target",
        config.database.name,
        server.redacted()
    );
    if config.media.enabled {
        // Mirror::new refuses a target that is the source: never mark production's bucket.
        let mirror = Mirror::new(&config.media)?;
        media::write_marker(mirror.target()).await?;
        say!(
            "marked s3://{} at {} as a media target ({})",
            mirror.target().name(),
            mirror.target().endpoint(),
            media::MARKER_KEY
        );
    }
    Ok(Exit::Success)
}
