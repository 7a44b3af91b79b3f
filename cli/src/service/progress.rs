//! Waiting for a service, as `docker service create/update` do: polls the
//! service and its tasks, shows one bar per slot on a terminal (indicatif) or
//! one line per change without one (CI logs), and ends with the exit code a
//! pipeline can act on.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::update_status::State;
use berth_proto::v1::{ListTasksRequest, Service, Task};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::watch::{Ending, Goal, SlotLine, Watcher};
use crate::client::{Client, explain};

/// How often the service is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Calls may fail this long in a row (a leader change) before the wait gives up.
const OUTAGE: Duration = Duration::from_secs(30);

/// A wait that ended otherwise than as hoped: `main` exits with `code` after
/// printing the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RolloutEnded {
    pub code: i32,
    pub message: String,
}

/// Waits for `goal` on service `name`; Ok when it completed.
pub async fn wait(client: &mut Client, name: &str, goal: Goal, since_ms: i64) -> Result<()> {
    let mut watcher = Watcher::new(since_ms);
    let mut show = Show::new(name, std::io::stderr().is_terminal());
    let mut nodes = BTreeMap::new();
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let looked = look(client, name, &mut nodes).await;
        let (service, tasks) = match looked {
            Ok(found) => {
                failing_since = None;
                found
            }
            Err(err) => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > OUTAGE {
                    return Err(err.context(format!("stopped waiting for service {name}")));
                }
                show.note(&format!("cannot reach the controller ({err:#}); retrying"));
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
        };
        let (lines, ending) = watcher.look(goal, &service, &tasks, &nodes);
        show.update(&service, &lines);
        if let Some(ending) = ending {
            show.finish(&ending);
            return match ending.exit_code() {
                0 => Ok(()),
                code => Err(RolloutEnded {
                    code,
                    message: format!("service {name}: {}", ending.message()),
                }
                .into()),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn look(
    client: &mut Client,
    name: &str,
    nodes: &mut BTreeMap<String, String>,
) -> Result<(Service, Vec<Task>)> {
    let service = super::fetch_service(client, name).await?;
    let tasks = client
        .list_tasks(ListTasksRequest {
            service: service.id.clone(),
            node: String::new(),
        })
        .await
        .map_err(explain)?
        .into_inner()
        .tasks;
    if tasks
        .iter()
        .any(|t| !t.node_id.is_empty() && !nodes.contains_key(&t.node_id))
    {
        *nodes = super::node_names(client).await?;
    }
    Ok((service, tasks))
}

/// The rollout's state in words: "updating to version 5: update to version 5".
fn headline(service: &Service) -> String {
    let status = service.update_status.clone().unwrap_or_default();
    match State::try_from(status.state).unwrap_or(State::None) {
        State::None => format!("version {}", service.spec_version),
        state => {
            let mut text = format!("{} (version {})", state.short_name(), status.to_version);
            if !status.message.is_empty() {
                text.push_str(&format!(": {}", status.message));
            }
            text
        }
    }
}

/// Bars on a terminal, lines otherwise; either way only changes are shown.
struct Show {
    name: String,
    bars: Option<(MultiProgress, ProgressBar, BTreeMap<String, ProgressBar>)>,
    last_headline: String,
    last_lines: BTreeMap<String, String>,
}

impl Show {
    fn new(name: &str, terminal: bool) -> Self {
        let bars = terminal.then(|| {
            let multi = MultiProgress::new();
            let head = multi.add(ProgressBar::new_spinner());
            head.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            head.enable_steady_tick(Duration::from_millis(120));
            (multi, head, BTreeMap::new())
        });
        Show {
            name: name.to_string(),
            bars,
            last_headline: String::new(),
            last_lines: BTreeMap::new(),
        }
    }

    fn note(&mut self, text: &str) {
        match &self.bars {
            Some((_, head, _)) => head.set_message(text.to_string()),
            None => eprintln!("{}: {text}", self.name),
        }
    }

    fn update(&mut self, service: &Service, lines: &[SlotLine]) {
        let headline = headline(service);
        let done = lines.iter().filter(|l| l.done).count();
        match &mut self.bars {
            Some((multi, head, slots)) => {
                head.set_message(format!(
                    "{}: {headline} — {done}/{} slots done",
                    self.name,
                    lines.len()
                ));
                for line in lines {
                    let bar = slots.entry(line.key.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(1));
                        bar.set_style(
                            ProgressStyle::with_template("  {prefix:>10} [{bar:3}] {wide_msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.set_prefix(format!("slot {}", line.key));
                        bar
                    });
                    bar.set_position(u64::from(line.done));
                    bar.set_message(line.text.clone());
                }
            }
            None => {
                if headline != self.last_headline {
                    eprintln!("{}: {headline}", self.name);
                }
                for line in lines {
                    if self.last_lines.get(&line.key) != Some(&line.text) {
                        eprintln!("{}: slot {}: {}", self.name, line.key, line.text);
                    }
                }
            }
        }
        self.last_headline = headline;
        self.last_lines = lines
            .iter()
            .map(|l| (l.key.clone(), l.text.clone()))
            .collect();
    }

    fn finish(&mut self, ending: &Ending) {
        if let Some((_, head, slots)) = &self.bars {
            for bar in slots.values() {
                bar.abandon();
            }
            head.abandon_with_message(format!("{}: {}", self.name, ending.message()));
        } else if ending.exit_code() == 0 {
            eprintln!("{}: {}", self.name, ending.message());
        }
    }
}
