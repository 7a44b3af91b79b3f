//! Container output in size-capped rotating files: tail, follow to the end.

#[path = "support/supervisor.rs"]
mod fixture;
mod support;

use std::time::Duration;

use anyhow::Result;
use berth_agent::supervisor::{LogLimits, LogStream};
use berth_proto::v1::TaskState;
use fixture::{Env, Rt, Seen, in_private_mounts, is};
use futures_util::StreamExt;

const T: Duration = Duration::from_secs(60);

#[test]
fn logs_rotate_at_the_cap_and_can_be_followed() -> Result<()> {
    let env = std::sync::Arc::new(Env::new("logs", Rt::Berth)?);
    let e = env.clone();
    in_private_mounts(move || async move {
        let cap = 4096;
        let (sup, rx) = e
            .open_with(|c| {
                c.log_limits = LogLimits {
                    max_bytes: cap,
                    max_files: 3,
                }
            })
            .await?;
        let mut rx = Seen::new(rx);
        let chatty = e.task("chatty", "seq 1 2000; echo done >&2");
        sup.reconcile(vec![chatty.clone()]);
        let end = rx.until_end(&chatty.id, T).await?;
        assert_eq!(
            end.last().map(|s| s.state),
            Some(TaskState::Complete as i32)
        );
        let dir = sup.log_dir(&chatty.id);
        let mut files: Vec<_> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("container.log"))
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["container.log", "container.log.1", "container.log.2"],
            "rotated"
        );
        for f in &files {
            let len = std::fs::metadata(dir.join(f))?.len();
            assert!(len <= cap && len > 0, "{f}: {len} bytes");
        }
        let tail: Vec<_> = sup.logs(&chatty.id, false, Some(3)).await?.collect().await;
        let tail: Vec<_> = tail.into_iter().collect::<Result<_, _>>()?;
        let got: Vec<_> = tail.iter().map(|l| (l.stream, l.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (LogStream::Stdout, "1999"),
                (LogStream::Stdout, "2000"),
                (LogStream::Stderr, "done")
            ]
        );
        // Everything kept is in order, the oldest lines rotated away.
        let all: Vec<_> = sup.logs(&chatty.id, false, None).await?.collect().await;
        let numbers: Vec<u32> = all
            .iter()
            .filter_map(|l| l.as_ref().ok()?.text.parse().ok())
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "gaps");
        assert!(numbers[0] > 1 && numbers.last() == Some(&2000));

        // Follow: lines as they come, the stream ends when the container does.
        let slow = e.task(
            "slow",
            "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done",
        );
        sup.reconcile(vec![chatty.clone(), slow.clone()]);
        rx.until(&slow.id, T, is(TaskState::Running)).await?;
        let stream = sup.logs(&slow.id, true, Some(0)).await?;
        let followed: Vec<_> = tokio::time::timeout(T, stream.collect::<Vec<_>>()).await?;
        let texts: Vec<String> = followed
            .into_iter()
            .map(|l| l.map(|l| l.text))
            .collect::<Result<_, _>>()?;
        // Lines written before the follow began may be part of the tail of 0:
        // what follows must end with the last line, in order, without repeats.
        assert!(texts.last().is_some_and(|l| l == "line 5"), "{texts:?}");
        let mut sorted = texts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, texts, "out of order or repeated");
        assert!(sup.logs("no-such-task", false, None).await.is_err());
        Ok(())
    })
}
