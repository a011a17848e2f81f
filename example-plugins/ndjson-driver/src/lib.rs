//! Example driver plugin `ndjson`: reads SysFlow records written as newline-delimited JSON,
//! one record per line, so test inputs can be written by hand or by a script.
//!
//! Run: `sfprocessor -driverdir <dir with the .so> -driver ndjson -config pipeline.json records.ndjson`.
//!
//! Each line is an object whose `"type"` is the record's short name; the other keys are
//! the Avro schema's field names. Absent keys take their zero value. Supported types:
//!
//! ```text
//! {"type":"H","version":5,"exporter":"node1","ip":"10.0.0.1","filename":"trace.sf"}
//! {"type":"C","id":"c1","name":"web","image":"nginx","imageid":"sha","containerType":0,"privileged":false}
//! {"type":"P","state":"CREATED","oid":{"createTS":1,"hpid":42},"poid":{"createTS":0,"hpid":1},"ts":1,
//!  "exe":"/bin/sh","exeArgs":"-c ls","uid":0,"userName":"root","gid":0,"groupName":"root","tty":false,
//!  "containerId":"c1","entry":false,"cwd":"/","env":[]}
//! {"type":"F","state":"CREATED","oid":"<40 hex digits>","ts":1,"restype":102,"path":"/etc/passwd","containerId":null}
//! {"type":"PE","procOID":{"createTS":1,"hpid":42},"ts":2,"tid":42,"opFlags":1,"args":[],"ret":0}
//! {"type":"FE","procOID":{...},"ts":3,"tid":42,"opFlags":2048,"fileOID":"<hex>","ret":0,"newFileOID":null}
//! {"type":"FF","procOID":{...},"ts":4,"tid":42,"opFlags":1,"openFlags":0,"endTs":5,"fileOID":"<hex>","fd":3,
//!  "numRRecvOps":1,"numWSendOps":0,"numRRecvBytes":10,"numWSendBytes":0}
//! {"type":"NF","procOID":{...},"ts":6,"tid":42,"opFlags":1,"endTs":7,"sip":16777343,"sport":1234,
//!  "dip":16777343,"dport":80,"proto":6,"fd":4,"numRRecvOps":0,"numWSendOps":1,"numRRecvBytes":0,"numWSendBytes":20}
//! ```
//!
//! (`containerType` stands for the container's Avro field `type`, which the record
//! type already uses.) A stream always starts with a header: if the first record is not
//! `H`, one is made up (`version` 5, `exporter` "ndjson", `filename` = the input path).
//! Empty lines are skipped; a line that is not a valid record is logged with its line
//! number, counted (`dropped_bad_lines`) and skipped.
//!
//! With `follow` set to `true` the driver waits at the end of the file for more lines (like
//! `tail -f`; a last line without its newline is left until it is complete) and ends only
//! when the host stops it.
//!
//! The driver hands its input over to a new build of itself (hot reload) or to an instance
//! with a new configuration (SIGHUP): the successor duplicates the open file and goes on at
//! the first line not yet returned, with the line number, header state and counters of its
//! predecessor. A successor configured with another `path` reads that file from its start.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    os::fd::AsRawFd,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use sysflow_plugin_api::{
    abi_stable::std_types::{ROption, RString, RVec},
    export_plugins, Batch, ConfigKey, Container, Counter, Driver, DriverHandoff, DriverPoll, Event, File as SfFile, FileEvent,
    FileFlow, Header, Host, NetworkFlow, ObjectState, Oid, PluginConfig, PluginDescriptor, PluginError, Process,
    ProcessEvent, SysFlowRecord,
};

/// Configuration keys the driver understands.
const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new("path", "the NDJSON file to read"),
    ConfigKey::new("follow", "true: at the end of the file, wait for more lines until stopped (default false)"),
];

/// The build's label in the log (environment variable `NDJSON_BUILD` when it was built,
/// else the crate version), so a hot reload shows which build resumed the input.
const BUILD: &str = match option_env!("NDJSON_BUILD") {
    Some(b) => b,
    None => env!("CARGO_PKG_VERSION"),
};

/// How long a poll at the end of a followed file waits before it returns `Idle`.
const FOLLOW_WAIT: Duration = Duration::from_millis(20);

/// What a predecessor hands its successor besides the open file (JSON in `DriverHandoff::state`).
#[derive(Serialize, Deserialize)]
struct HandedOver {
    path: String,
    /// Byte offset of the first line not yet returned.
    offset: u64,
    line_no: u64,
    header_seen: bool,
    records: u64,
    bad_lines: u64,
}

/// Bad lines logged individually; the rest are only counted.
const MAX_LOGGED_BAD_LINES: u64 = 10;

/// Reads an NDJSON file of SysFlow records.
pub struct NdjsonDriver {
    host: Host,
    path: String,
    reader: BufReader<File>,
    line: String,
    line_no: u64,
    header_seen: bool,
    records: u64,
    bad_lines: u64,
    follow: bool,
    stopping: bool,
}

/// The `path` and `follow` keys.
fn path_and_follow(config: &PluginConfig) -> Result<(String, bool), PluginError> {
    let path = config.str("path")?.ok_or_else(|| PluginError::new("key 'path': the ndjson driver needs an input file"))?;
    Ok((path.to_string(), config.parse_or("follow", false)?))
}

impl Driver for NdjsonDriver {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let (path, follow) = path_and_follow(config)?;
        let file = File::open(&path).map_err(|e| PluginError::new(format!("{path}: cannot open: {e}")))?;
        Ok(NdjsonDriver {
            host,
            path,
            reader: BufReader::new(file),
            line: String::new(),
            line_no: 0,
            header_seen: false,
            records: 0,
            bad_lines: 0,
            follow,
            stopping: false,
        })
    }

    const HANDOFF: bool = true;

    fn handoff(&mut self) -> Result<Option<DriverHandoff>, PluginError> {
        // The reader's logical position: what it buffered but did not return is read again.
        let offset = self
            .reader
            .stream_position()
            .map_err(|e| PluginError::new(format!("{}: cannot tell the read position: {e}", self.path)))?;
        let state = HandedOver {
            path: self.path.clone(),
            offset,
            line_no: self.line_no,
            header_seen: self.header_seen,
            records: self.records,
            bad_lines: self.bad_lines,
        };
        let state = serde_json::to_vec(&state).map_err(|e| PluginError::new(format!("handoff state: {e}")))?;
        Ok(Some(DriverHandoff { fds: RVec::from(vec![self.reader.get_ref().as_raw_fd()]), state: RVec::from(state) }))
    }

    fn resume(config: &PluginConfig, host: Host, handoff: &DriverHandoff) -> Result<Self, PluginError> {
        let state: HandedOver = serde_json::from_slice(handoff.state.as_slice())
            .map_err(|e| PluginError::new(format!("handoff state from the predecessor: {e}")))?;
        let (path, follow) = path_and_follow(config)?;
        if path != state.path {
            host.info(&format!("input changed from {} to {path}: reading it from the start", state.path));
            return Self::new(config, host);
        }
        let mut file = File::from(handoff.dup_fd(0)?);
        file.seek(SeekFrom::Start(state.offset))
            .map_err(|e| PluginError::new(format!("{path}: cannot seek to {}: {e}", state.offset)))?;
        host.info(&format!("build {BUILD} resuming {path} at line {} (byte {})", state.line_no + 1, state.offset));
        Ok(NdjsonDriver {
            host,
            path,
            reader: BufReader::new(file),
            line: String::new(),
            line_no: state.line_no,
            header_seen: state.header_seen,
            records: state.records,
            bad_lines: state.bad_lines,
            follow,
            stopping: false,
        })
    }

    fn stop(&mut self) {
        self.stopping = true;
    }

    fn poll(&mut self, max_records: usize) -> Result<DriverPoll, PluginError> {
        let mut batch = Vec::with_capacity(max_records.min(4096));
        while batch.len() < max_records {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .map_err(|e| PluginError::new(format!("{}:{}: read error: {e}", self.path, self.line_no + 1)))?;
            if n == 0 {
                break;
            }
            if self.follow && !self.line.ends_with('\n') {
                // A line still being written: read it whole on a later poll.
                let back = i64::try_from(n).map_err(|_| PluginError::new(format!("{}: line too long", self.path)))?;
                self.reader
                    .seek_relative(-back)
                    .map_err(|e| PluginError::new(format!("{}:{}: cannot seek back: {e}", self.path, self.line_no + 1)))?;
                break;
            }
            self.line_no += 1;
            if self.line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<JsonRecord>(&self.line).map_err(|e| e.to_string()).and_then(JsonRecord::into_record) {
                Ok(record) => {
                    if !self.header_seen && !matches!(record, SysFlowRecord::Header(_)) {
                        batch.push(SysFlowRecord::Header(Header {
                            version: 5,
                            exporter: "ndjson".into(),
                            ip: "NA".into(),
                            filename: self.path.as_str().into(),
                        }));
                    }
                    self.header_seen = true;
                    batch.push(record);
                }
                Err(e) => {
                    self.bad_lines += 1;
                    if self.bad_lines <= MAX_LOGGED_BAD_LINES {
                        self.host.warn(&format!("{}:{}: skipping line: {e}", self.path, self.line_no));
                    }
                }
            }
        }
        if batch.is_empty() {
            if self.follow && !self.stopping {
                std::thread::sleep(FOLLOW_WAIT);
                return Ok(DriverPoll::Idle);
            }
            return Ok(DriverPoll::End);
        }
        self.records += batch.len() as u64;
        Ok(DriverPoll::Batch(Batch::sysflow(batch)))
    }

    fn counters(&self) -> Vec<Counter> {
        vec![Counter::new("records", self.records), Counter::loss("dropped_bad_lines", self.bad_lines)]
    }
}

export_plugins![PluginDescriptor::driver::<NdjsonDriver>(
    "ndjson",
    "reads SysFlow records from newline-delimited JSON",
    env!("CARGO_PKG_VERSION"),
    CONFIG_KEYS,
)];

/// One line of input.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum JsonRecord {
    #[serde(rename = "H")]
    Header(JsonHeader),
    #[serde(rename = "C")]
    Container(JsonContainer),
    #[serde(rename = "P")]
    Process(JsonProcess),
    #[serde(rename = "F")]
    File(JsonFile),
    #[serde(rename = "PE")]
    ProcessEvent(JsonProcessEvent),
    #[serde(rename = "FE")]
    FileEvent(JsonFileEvent),
    #[serde(rename = "FF")]
    FileFlow(JsonFileFlow),
    #[serde(rename = "NF")]
    NetworkFlow(JsonNetworkFlow),
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonHeader {
    version: i64,
    exporter: String,
    ip: String,
    filename: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonContainer {
    id: String,
    name: String,
    image: String,
    imageid: String,
    container_type: i32,
    privileged: bool,
    pod_id: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct JsonOid {
    #[serde(rename = "createTS")]
    create_ts: i64,
    hpid: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonProcess {
    state: Option<String>,
    oid: JsonOid,
    poid: Option<JsonOid>,
    ts: i64,
    exe: String,
    exe_args: String,
    uid: i32,
    user_name: String,
    gid: i32,
    group_name: String,
    tty: bool,
    container_id: Option<String>,
    entry: bool,
    cwd: String,
    env: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonFile {
    state: Option<String>,
    oid: String,
    ts: i64,
    restype: i32,
    path: String,
    container_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonProcessEvent {
    #[serde(rename = "procOID")]
    proc_oid: JsonOid,
    ts: i64,
    tid: i64,
    op_flags: i32,
    args: Vec<String>,
    ret: i32,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonFileEvent {
    #[serde(rename = "procOID")]
    proc_oid: JsonOid,
    ts: i64,
    tid: i64,
    op_flags: i32,
    #[serde(rename = "fileOID")]
    file_oid: String,
    ret: i32,
    #[serde(rename = "newFileOID")]
    new_file_oid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonFileFlow {
    #[serde(rename = "procOID")]
    proc_oid: JsonOid,
    ts: i64,
    tid: i64,
    op_flags: i32,
    open_flags: i32,
    end_ts: i64,
    #[serde(rename = "fileOID")]
    file_oid: String,
    fd: i32,
    num_r_recv_ops: i64,
    num_w_send_ops: i64,
    num_r_recv_bytes: i64,
    num_w_send_bytes: i64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsonNetworkFlow {
    #[serde(rename = "procOID")]
    proc_oid: JsonOid,
    ts: i64,
    tid: i64,
    op_flags: i32,
    end_ts: i64,
    sip: i32,
    sport: i32,
    dip: i32,
    dport: i32,
    proto: i32,
    fd: i32,
    num_r_recv_ops: i64,
    num_w_send_ops: i64,
    num_r_recv_bytes: i64,
    num_w_send_bytes: i64,
}

impl From<JsonOid> for Oid {
    fn from(o: JsonOid) -> Oid {
        Oid { create_ts: o.create_ts, hpid: o.hpid }
    }
}

fn state(s: Option<&str>) -> Result<ObjectState, String> {
    match s.unwrap_or("CREATED") {
        "CREATED" => Ok(ObjectState::Created),
        "MODIFIED" => Ok(ObjectState::Modified),
        "REUP" => Ok(ObjectState::Reup),
        other => Err(format!("state: expected CREATED, MODIFIED or REUP, found '{other}'")),
    }
}

/// A file OID: the collector's 20-byte SHA-1, written as 40 hex digits.
fn foid(hex: &str, key: &str) -> Result<[u8; 20], String> {
    let bad = || format!("{key}: expected 40 hex digits, found '{hex}'");
    if hex.len() != 40 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn rstrings(v: Vec<String>) -> RVec<RString> {
    v.into_iter().map(RString::from).collect()
}

fn ropt(v: Option<String>) -> ROption<RString> {
    v.map(RString::from).into()
}

impl JsonRecord {
    fn into_record(self) -> Result<SysFlowRecord, String> {
        Ok(match self {
            JsonRecord::Header(h) => SysFlowRecord::Header(Header {
                version: h.version,
                exporter: h.exporter.into(),
                ip: h.ip.into(),
                filename: h.filename.into(),
            }),
            JsonRecord::Container(c) => SysFlowRecord::Container(Container {
                id: c.id.into(),
                name: c.name.into(),
                image: c.image.into(),
                imageid: c.imageid.into(),
                container_type: c.container_type,
                privileged: c.privileged,
                pod_id: ropt(c.pod_id),
            }),
            JsonRecord::Process(p) => SysFlowRecord::Process(Process {
                state: state(p.state.as_deref())?,
                oid: p.oid.into(),
                poid: p.poid.map(Oid::from).into(),
                ts: p.ts,
                exe: p.exe.into(),
                exe_args: p.exe_args.into(),
                uid: p.uid,
                user_name: p.user_name.into(),
                gid: p.gid,
                group_name: p.group_name.into(),
                tty: p.tty,
                container_id: ropt(p.container_id),
                entry: p.entry,
                cwd: p.cwd.into(),
                env: rstrings(p.env),
            }),
            JsonRecord::File(f) => SysFlowRecord::File(SfFile {
                state: state(f.state.as_deref())?,
                oid: foid(&f.oid, "oid")?,
                ts: f.ts,
                restype: f.restype,
                path: f.path.into(),
                container_id: ropt(f.container_id),
            }),
            JsonRecord::ProcessEvent(e) => SysFlowRecord::Event(Event::Process(ProcessEvent {
                proc_oid: e.proc_oid.into(),
                ts: e.ts,
                tid: e.tid,
                op_flags: e.op_flags,
                args: rstrings(e.args),
                ret: e.ret,
            })),
            JsonRecord::FileEvent(e) => SysFlowRecord::Event(Event::File(FileEvent {
                proc_oid: e.proc_oid.into(),
                ts: e.ts,
                tid: e.tid,
                op_flags: e.op_flags,
                file_oid: foid(&e.file_oid, "fileOID")?,
                ret: e.ret,
                new_file_oid: e.new_file_oid.as_deref().map(|h| foid(h, "newFileOID")).transpose()?.into(),
            })),
            JsonRecord::FileFlow(f) => SysFlowRecord::Event(Event::FileFlow(FileFlow {
                proc_oid: f.proc_oid.into(),
                ts: f.ts,
                tid: f.tid,
                op_flags: f.op_flags,
                open_flags: f.open_flags,
                end_ts: f.end_ts,
                file_oid: foid(&f.file_oid, "fileOID")?,
                fd: f.fd,
                num_r_recv_ops: f.num_r_recv_ops,
                num_w_send_ops: f.num_w_send_ops,
                num_r_recv_bytes: f.num_r_recv_bytes,
                num_w_send_bytes: f.num_w_send_bytes,
            })),
            JsonRecord::NetworkFlow(f) => SysFlowRecord::Event(Event::NetworkFlow(NetworkFlow {
                proc_oid: f.proc_oid.into(),
                ts: f.ts,
                tid: f.tid,
                op_flags: f.op_flags,
                end_ts: f.end_ts,
                sip: f.sip,
                sport: f.sport,
                dip: f.dip,
                dport: f.dport,
                proto: f.proto,
                fd: f.fd,
                num_r_recv_ops: f.num_r_recv_ops,
                num_w_send_ops: f.num_w_send_ops,
                num_r_recv_bytes: f.num_r_recv_bytes,
                num_w_send_bytes: f.num_w_send_bytes,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysflow_plugin_api::LogLevel;
    use sysflow_plugin_api::abi_stable::std_types::RStr;

    extern "C" fn no_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

    fn read_all(text: &str) -> (Vec<SysFlowRecord>, NdjsonDriver) {
        let dir = std::env::temp_dir().join(format!("ndjson-driver-test-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.ndjson");
        std::fs::write(&path, text).unwrap();
        let mut map = serde_json::Map::new();
        map.insert("path".into(), path.to_str().unwrap().into());
        let mut d = NdjsonDriver::new(&PluginConfig::from_map(map), Host::new(no_log, "ndjson")).unwrap();
        let mut out = Vec::new();
        while let DriverPoll::Batch(Batch::SysFlow(b)) = d.poll(2).unwrap() {
            out.extend(b.iter().cloned());
        }
        (out, d)
    }

    #[test]
    fn synthesises_a_header_and_skips_bad_lines_by_number() {
        let (recs, d) = read_all(concat!(
            r#"{"type":"P","oid":{"createTS":1,"hpid":42},"exe":"/bin/sh","env":["A=1"]}"#, "\n",
            "\n",
            "not json\n",
            r#"{"type":"FE","procOID":{"createTS":1,"hpid":42},"fileOID":"short"}"#, "\n",
            r#"{"type":"PE","procOID":{"createTS":1,"hpid":42},"ts":7,"tid":42,"opFlags":1,"args":["-c"]}"#, "\n",
        ));
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert!(matches!(&recs[0], SysFlowRecord::Header(h) if h.version == 5 && h.exporter == "ndjson"));
        assert!(matches!(&recs[1], SysFlowRecord::Process(p) if p.exe == "/bin/sh" && p.oid.hpid == 42 && p.env.len() == 1));
        assert!(matches!(&recs[2], SysFlowRecord::Event(Event::Process(e)) if e.ts == 7 && e.proc_oid.create_ts == 1));
        assert_eq!(d.bad_lines, 2);
    }

    #[test]
    fn a_leading_header_is_kept_as_written() {
        let (recs, _) = read_all(concat!(
            r#"{"type":"H","version":4,"exporter":"n1","ip":"10.0.0.1","filename":"x.sf"}"#, "\n",
            r#"{"type":"F","oid":"00112233445566778899aabbccddeeff00112233","path":"/etc/passwd"}"#, "\n",
        ));
        assert_eq!(recs.len(), 2);
        assert!(matches!(&recs[0], SysFlowRecord::Header(h) if h.version == 4 && h.exporter == "n1"));
        assert!(matches!(&recs[1], SysFlowRecord::File(f) if f.oid[1] == 0x11 && f.path == "/etc/passwd"));
    }
}
