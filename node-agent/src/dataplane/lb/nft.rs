//! Talking to the kernel through the `nft` binary (JSON in and out); blocking.

use std::borrow::Cow;
use std::io::Write;
use std::process::{Command, Stdio};

use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, Table};
use nftables::types::NfFamily;
use serde_json::Value;

use super::ruleset::TABLE;
use crate::dataplane::error::NetworkError;

const NFT: &str = "nft";

fn nft_error(what: &str, message: impl Into<String>) -> NetworkError {
    NetworkError::Nft {
        what: what.to_string(),
        message: message.into(),
    }
}

/// Runs `nft -j <args>` with `stdin`; its stdout, or an error with its stderr.
fn run(what: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let mut child = Command::new(NFT)
        .arg("-j")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| nft_error(what, format!("cannot run {NFT}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| nft_error(what, format!("writing to {NFT}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| nft_error(what, format!("waiting for {NFT}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(nft_error(
            what,
            format!("{} ({})", stderr.trim(), out.status),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| nft_error(what, format!("output not utf-8: {e}")))
}

/// The `ip berth` table as nft lists it (each object without its handle, the
/// metainfo left out), or None when there is no such table.
pub(super) fn read_table() -> Result<Option<Vec<Value>>, NetworkError> {
    let what = "list table ip berth";
    let out = match run(what, &["list", "table", "ip", TABLE], None) {
        Ok(out) => out,
        Err(NetworkError::Nft { message, .. }) if message.contains("No such file or directory") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let listing: Value =
        serde_json::from_str(&out).map_err(|e| nft_error(what, format!("bad json: {e}")))?;
    let objects = listing
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| nft_error(what, "no \"nftables\" array in the listing"))?;
    Ok(Some(
        objects
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .cloned()
            .map(without_handle)
            .collect(),
    ))
}

/// `{"rule": {.., "handle": 7}}` -> `{"rule": {..}}`: handles are the kernel's
/// numbering, not content.
fn without_handle(mut object: Value) -> Value {
    if let Some(kind) = object.as_object_mut() {
        for inner in kind.values_mut() {
            if let Some(fields) = inner.as_object_mut() {
                fields.remove("handle");
            }
        }
    }
    object
}

fn table() -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: NfFamily::IP,
        name: Cow::Borrowed(TABLE),
        handle: None,
    })
}

/// Runs `commands` as one nft transaction.
fn transaction(what: &str, commands: Vec<NfCmd<'static>>) -> Result<(), NetworkError> {
    let batch = Nftables {
        objects: Cow::Owned(commands.into_iter().map(NfObject::CmdObject).collect()),
    };
    let json = serde_json::to_string(&batch).map_err(|e| nft_error(what, e.to_string()))?;
    run(what, &["-f", "-"], Some(&json)).map(drop)
}

/// Replaces the table with `objects` (a table, its chains and rules) in one
/// transaction: add (so that the delete finds it), delete, add everything. The
/// kernel commits the batch as a whole, so packets see either the old rules or
/// the new ones.
pub(super) fn replace_table(objects: &[NfListObject<'static>]) -> Result<(), NetworkError> {
    let mut commands = vec![NfCmd::Add(table()), NfCmd::Delete(table())];
    commands.extend(objects.iter().cloned().map(NfCmd::Add));
    transaction("replace table ip berth", commands)
}

/// Deletes the table if it is there (add-then-delete: no error when absent).
pub(super) fn delete_table() -> Result<(), NetworkError> {
    transaction(
        "delete table ip berth",
        vec![NfCmd::Add(table()), NfCmd::Delete(table())],
    )
}
