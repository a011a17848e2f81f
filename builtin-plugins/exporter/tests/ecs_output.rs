//! ECS output of hand-built flat records.

use serde_json::{json, Value};
use sysflow_exporter::EcsEncoder;
use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, ROption, RString},
    opflags::*,
    Event, File, FileEvent, FileFlow, FlatRecord, Header, K8sEvent, NetworkFlow, Oid, PolicyContext, Process,
    ProcessEvent, RuleMatch,
};

fn ip(a: u8, b: u8, c: u8, d: u8) -> i32 {
    i32::from_le_bytes([a, b, c, d])
}

fn header() -> RArc<Header> {
    RArc::new(Header { version: 4, exporter: "node1".into(), ip: "10.0.0.1".into(), filename: "t".into() })
}

const CHILD: Oid = Oid { create_ts: 1647543894672412244, hpid: 20 };
const PARENT: Oid = Oid { create_ts: 1_000_000_000, hpid: 10 };

fn ancestry(with_parent: bool) -> Vec<RArc<Process>> {
    let child = RArc::new(Process {
        oid: CHILD,
        poid: ROption::RSome(PARENT),
        exe: "/bin/ls".into(),
        exe_args: "".into(),
        uid: 1000,
        user_name: "".into(),
        gid: 1000,
        group_name: "users".into(),
        ..Process::default()
    });
    let parent =
        RArc::new(Process { oid: PARENT, exe: "/bin/bash".into(), exe_args: "".into(), ..Process::default() });
    if with_parent {
        vec![child, parent]
    } else {
        vec![child]
    }
}

fn record(event: Event, with_parent: bool) -> FlatRecord {
    let mut r = FlatRecord::new(header(), event);
    r.ancestry = RArc::new(ancestry(with_parent).into());
    r
}

fn encode(r: &FlatRecord) -> (String, Value) {
    let mut out = Vec::new();
    EcsEncoder::new().encode(r, &mut out);
    let text = String::from_utf8(out).expect("UTF-8");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
    (text, value)
}

#[test]
fn process_event_document() {
    let ev = Event::Process(ProcessEvent {
        proc_oid: CHILD,
        ts: 1647544460271985607,
        tid: 21,
        op_flags: OP_CLONE,
        ret: 847,
        ..ProcessEvent::default()
    });
    let (text, _) = encode(&record(ev, true));
    let expected = concat!(
        r#"{"@timestamp":"2022-03-17T19:14:20.271985607Z","agent":{"type":"SysFlow","version":"0.7.0"},"ecs":{"version":"8.2"},"#,
        r#""event":{"action":"process-thread-start","category":"process","duration":0,"end":"2022-03-17T19:14:20.271985607Z","kind":"event","sf_ret":847,"sf_type":"PE","start":"2022-03-17T19:14:20.271985607Z","type":"thread-start"},"#,
        r#""host":{"id":"node1","ip":"10.0.0.1"},"#,
        r#""process":{"args":"","command_line":"/bin/ls ","executable":"/bin/ls","name":"ls","parent":{"args":"","command_line":"/bin/bash","executable":"/bin/bash","name":"bash","pid":10,"start":"1970-01-01T00:00:01Z"},"pid":20,"start":"2022-03-17T19:04:54.672412244Z","thread":{"id":21}},"#,
        r#""user":{"group":{"id":1000,"name":"users"},"id":1000}}"#
    );
    assert_eq!(text, expected);
}

#[test]
fn network_flow_with_community_id_and_recorded_counters() {
    let ev = Event::NetworkFlow(NetworkFlow {
        proc_oid: CHILD,
        ts: 1647544455672150416,
        end_ts: 1647544455674046772,
        tid: 20,
        op_flags: OP_ACCEPT | OP_READ_RECV | OP_WRITE_SEND,
        sip: ip(127, 0, 0, 1),
        sport: 52852,
        dip: ip(0, 0, 0, 0),
        dport: 8080,
        proto: 6,
        num_r_recv_ops: 2,
        num_w_send_ops: 1,
        num_r_recv_bytes: 118,
        num_w_send_bytes: 92,
        ..NetworkFlow::default()
    });
    let (_, v) = encode(&record(ev, false));
    assert_eq!(v["event"]["action"], "network-connection-traffic");
    assert_eq!(v["event"]["duration"], 1896356);
    // The value upstream computes for this flow (gommunityid, seed 0).
    assert_eq!(
        v["network"],
        json!({"bytes": 210, "community_id": "1:NxujcBG9z5H1GZeqHjHYPQi1Cmg=", "iana_number": "6", "protocol": "tcp"})
    );
    assert_eq!(v["source"], json!({"address": "127.0.0.1", "bytes": 92, "ip": "127.0.0.1", "packets": 1, "port": 52852}));
    assert_eq!(v["destination"], json!({"address": "0.0.0.0", "bytes": 118, "ip": "0.0.0.0", "packets": 2, "port": 8080}));
    // Parent pid known from poid but not cached: empty strings, "." name.
    assert_eq!(
        v["process"]["parent"],
        json!({"args": "", "command_line": "", "executable": "", "name": ".", "pid": 10, "start": "1970-01-01T00:00:01Z"})
    );
}

#[test]
fn file_documents() {
    let ff = Event::FileFlow(FileFlow {
        proc_oid: CHILD,
        ts: 5,
        end_ts: 9,
        op_flags: OP_OPEN | OP_WRITE_SEND | OP_CLOSE,
        fd: 7,
        num_w_send_ops: 1,
        num_w_send_bytes: 10,
        ..FileFlow::default()
    });
    // No file entity: the path is made from the pid and fd.
    let (_, v) = encode(&record(ff.clone(), false));
    assert_eq!(v["event"]["action"], "file-access-write");
    assert_eq!(v["event"]["type"], "change");
    assert_eq!(v["file"], json!({"directory": "/proc/20/fd", "name": "7", "path": "/proc/20/fd/7", "type": "unknown"}));
    assert_eq!(v["sf_file_action"], json!({"bytes_read": 0, "bytes_written": 10, "read_ops": 0, "write_ops": 1}));

    let mut r = record(ff, false);
    r.file = ROption::RSome(RArc::new(File { restype: 'd' as i32, path: "/etc/x".into(), ..File::default() }));
    let (_, v) = encode(&r);
    assert_eq!(v["file"], json!({"directory": "/etc/x", "type": "dir"}));

    let fe = Event::File(FileEvent { proc_oid: CHILD, op_flags: OP_SYMLINK, ..FileEvent::default() });
    let mut r = record(fe, false);
    r.file = ROption::RSome(RArc::new(File { restype: 'f' as i32, path: "/tmp/link".into(), ..File::default() }));
    r.new_file = ROption::RSome(RArc::new(File { restype: 'f' as i32, path: "/etc/passwd".into(), ..File::default() }));
    let (text, v) = encode(&r);
    assert_eq!(v["event"]["action"], "file-link");
    assert!(
        text.contains(r#""file":{"directory":"/tmp","name":"link","path":"/tmp/link","target_path":"/etc/passwd","type":"symlink"}"#),
        "{text}"
    );
}

#[test]
fn kubernetes_event_and_policy_fields() {
    let ev = Event::K8s(K8sEvent {
        kind: 2,
        action: 0,
        ts: 1,
        message: r#"{"items":[{"name":"web-0","namespace":"shop"}],"kind":"Pod"}"#.into(),
    });
    let mut r = FlatRecord::new(header(), ev);
    r.context = PolicyContext {
        matched: vec![
            RArc::new(RuleMatch { name: "New pod".into(), desc: "".into(), priority: 0, tags: vec![RString::from("k8s")].into(), ..Default::default() }),
            RArc::new(RuleMatch { name: "Second <rule>".into(), desc: "".into(), priority: 0, tags: Default::default(), ..Default::default() }),
        ]
        .into(),
        tags: vec![RString::from("first")].into(),
    };
    let (text, v) = encode(&r);
    assert_eq!(v["event"]["type"], "creation");
    assert_eq!(v["event"]["action"], "K8S_COMPONENT_ADDED");
    assert_eq!(v["event"]["reason"], "New pod, Second <rule>");
    assert!(text.contains(r#""reason":"New pod, Second \u003crule\u003e","severity":1,"#), "severity is at least low: {text}");
    assert_eq!(
        v["orchestrator"],
        json!({"namespace": "shop", "resource": {"name": "web-0", "type": "pod"}, "type": "kubernetes"})
    );
    assert_eq!(v["tags"], json!(["first", "k8s"]));
    assert!(v.get("process").is_none() && v.get("user").is_none() && v.get("container").is_none());
}
