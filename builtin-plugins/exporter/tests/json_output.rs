//! Exact JSON output of hand-built flat records, one per record type and entity situation.

use sysflow_plugin_api::{
    abi_stable::std_types::{RArc, ROption, RString, RVec},
    flat::oid_hash,
    opflags::*,
    Container, Event, File, FileEvent, FileFlow, FlatRecord, Header, K8sEvent, NetworkFlow, ObjectState, Oid, Pod,
    PolicyContext, Port, Process, ProcessEvent, RuleMatch, Service,
};
use sysflow_exporter::JsonEncoder;

fn ip(a: u8, b: u8, c: u8, d: u8) -> i64 {
    u32::from_le_bytes([a, b, c, d]) as i64
}

fn header() -> RArc<Header> {
    RArc::new(Header {
        version: 4,
        exporter: "node1".into(),
        ip: "10.0.0.1".into(),
        filename: "/var/sysflow/1647544455".into(),
    })
}

const PARENT: Oid = Oid { create_ts: 100, hpid: 10 };
const CHILD: Oid = Oid { create_ts: 200, hpid: 20 };

fn parent() -> RArc<Process> {
    RArc::new(Process {
        state: ObjectState::Created,
        oid: PARENT,
        poid: ROption::RNone,
        exe: "/bin/bash".into(),
        exe_args: "-c ls".into(),
        uid: 0,
        user_name: "root".into(),
        gid: 0,
        group_name: "root".into(),
        tty: true,
        entry: true,
        ..Process::default()
    })
}

fn child() -> RArc<Process> {
    RArc::new(Process {
        state: ObjectState::Created,
        oid: CHILD,
        poid: ROption::RSome(PARENT),
        exe: "/bin/ls".into(),
        exe_args: "".into(),
        uid: 1000,
        user_name: "alice".into(),
        gid: 1000,
        group_name: "users".into(),
        container_id: ROption::RSome("c1ab".into()),
        ..Process::default()
    })
}

fn container() -> RArc<Container> {
    RArc::new(Container {
        id: "c1ab".into(),
        name: "web".into(),
        image: "nginx:1.21".into(),
        imageid: "f40b".into(),
        container_type: 0,
        privileged: true,
        pod_id: ROption::RSome("pod-1".into()),
    })
}

fn pod() -> RArc<Pod> {
    RArc::new(Pod {
        ts: 5,
        id: "pod-1".into(),
        name: "web-0".into(),
        node_name: "node1".into(),
        host_ip: vec![ip(10, 0, 0, 1), ip(10, 0, 0, 2)].into(),
        internal_ip: vec![ip(172, 17, 0, 5)].into(),
        namespace: "default".into(),
        restart_count: 2,
        services: vec![
            Service {
                name: "web".into(),
                id: "s1".into(),
                namespace: "default".into(),
                port_list: vec![Port { port: 80, target_port: 8080, node_port: 0, proto: "TCP".into() }].into(),
                cluster_ip: vec![ip(10, 96, 0, 10), ip(10, 96, 0, 11)].into(),
            },
            Service { name: "db".into(), id: "s2".into(), namespace: "default".into(), ..Service::default() },
        ]
        .into(),
        ..Pod::default()
    })
}

fn with_process(event: Event, ancestry: Vec<RArc<Process>>, in_container: bool) -> FlatRecord {
    let mut r = FlatRecord::new(header(), event);
    r.ancestry = RArc::new(ancestry.into());
    if in_container {
        r.container = ROption::RSome(container());
        r.pod = ROption::RSome(pod());
    }
    r
}

fn encode(r: &FlatRecord) -> String {
    let mut out = Vec::new();
    JsonEncoder::new().encode(r, &mut out);
    let text = String::from_utf8(out).expect("encoder output is UTF-8");
    serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
    text
}

fn h(oid: Oid) -> String {
    oid_hash(oid)
}

const META_NODE: &str = r#""meta":{"schema":4,"tracename":"1647544455"},"node":{"id":"node1","ip":"10.0.0.1"}"#;
const CONTAINER: &str =
    r#""container":{"id":"c1ab","image":"nginx:1.21","imageid":"f40b","name":"web","privileged":1,"type":"DOCKER"}"#;
const POD: &str = concat!(
    r#""pod":{"hostip":["10.0.0.1","10.0.0.2"],"id":"pod-1","internalip":["172.17.0.5"],"name":"web-0","#,
    r#""namespace":"default","nodename":"node1","restartcnt":2,"services":[{"id":"s1","name":"web","namespace":"default","#,
    r#""clusterIP":["10.96.0.10","10.96.0.11"],"ports":[{"port":80,"targetport":8080,"nodeport":0,"proto":"TCP"}]},"#,
    r#"{"id":"s2","name":"db","namespace":"default","clusterIP":[],"ports":[]}],"ts":5}"#
);

fn pproc() -> String {
    format!(
        r#""pproc":{{"args":"-c ls","cmdline":"/bin/bash -c ls","createts":100,"entry":true,"exe":"/bin/bash","gid":0,"group":"root","name":"bash","oid":"{}","pid":10,"tty":true,"uid":0,"user":"root"}}"#,
        h(PARENT)
    )
}

fn proc(tid: i64) -> String {
    format!(
        r#""proc":{{"acmdline":["/bin/ls","/bin/bash -c ls"],"aexe":["/bin/ls","/bin/bash"],"aname":["ls","bash"],"apid":[20,10],"args":"","cmdline":"/bin/ls ","createts":200,"entry":false,"exe":"/bin/ls","gid":1000,"group":"users","name":"ls","oid":"{}","pid":20,"tid":{tid},"tty":false,"uid":1000,"user":"alice"}}"#,
        h(CHILD)
    )
}

fn exec_event() -> Event {
    Event::Process(ProcessEvent { proc_oid: CHILD, ts: 1000, tid: 20, op_flags: OP_EXEC, ..ProcessEvent::default() })
}

#[test]
fn process_event_in_a_pod_with_parent() {
    let r = with_process(exec_event(), vec![child(), parent()], true);
    let expected = format!(
        r#"{{"version":5,"endts":0,"opflags":["EXEC"],"ret":0,"ts":1000,"type":"PE",{CONTAINER},{META_NODE},{POD},{},{}}}"#,
        pproc(),
        proc(20)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn policies_and_tags_follow_the_sections() {
    let mut r = with_process(exec_event(), vec![child(), parent()], true);
    r.context = PolicyContext {
        matched: vec![
            RArc::new(RuleMatch {
                name: "Shell <in> container".into(),
                desc: "line one\n  & two".into(),
                priority: 3,
                tags: vec![RString::from("mitre:T1059"), RString::from("shell")].into(),
                ..Default::default()
            }),
            RArc::new(RuleMatch { name: "r2".into(), desc: "".into(), priority: 0, tags: RVec::new(), ..Default::default() }),
        ]
        .into(),
        tags: vec![RString::from("action-tag")].into(),
    };
    let text = encode(&r);
    let tail = concat!(
        r#"},"policies":[{"id":"Shell \u003cin\u003e container","desc":"line one\n  \u0026 two","priority":3},"#,
        r#"{"id":"r2","desc":"","priority":0}],"tags":["action-tag","mitre:T1059","shell"]}"#
    );
    assert!(text.ends_with(tail), "{text}");
    // Tags alone (an action tagged, no rule matched) still produce the tags key only.
    r.context.matched = RVec::new();
    let text = encode(&r);
    assert!(text.ends_with(r#""user":"alice"},"tags":["action-tag"]}"#), "{text}");
    assert!(!text.contains("policies"));
}

#[test]
fn file_flow_on_the_host_with_recorded_counters() {
    let ev = Event::FileFlow(FileFlow {
        proc_oid: CHILD,
        ts: 1000,
        tid: 21,
        op_flags: OP_OPEN | OP_READ_RECV | OP_CLOSE,
        open_flags: 1 | 4096,
        end_ts: 2000,
        file_oid: [0xab; 20],
        fd: 3,
        num_r_recv_ops: 2,
        num_w_send_ops: 0,
        num_r_recv_bytes: 324,
        num_w_send_bytes: 0,
    });
    let mut r = with_process(ev, vec![child(), parent()], false);
    r.file = ROption::RSome(RArc::new(File {
        oid: [0xab; 20],
        restype: 'f' as i32,
        path: "/etc/passwd".into(),
        ..File::default()
    }));
    let oid = "ab".repeat(20);
    let expected = format!(
        concat!(
            r#"{{"version":5,"endts":2000,"opflags":["OPEN","CLOSE","READ"],"ret":0,"ts":1000,"type":"FF","#,
            r#""file":{{"directory":"/etc","fd":3,"is_open_read":true,"is_open_write":false,"name":"passwd","newdirectory":".","newname":".","newoid":"","newpath":"","newsymlink":"","oid":"{oid}","openflags":["RDONLY","CLOEXEC"],"path":"/etc/passwd","symlink":"","type":"f"}},"#,
            r#""flow":{{"rbytes":324,"rops":2,"wbytes":0,"wops":0}},{meta},{pproc},{proc}}}"#
        ),
        oid = oid,
        meta = META_NODE,
        pproc = pproc(),
        proc = proc(21)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn file_flow_on_a_unix_socket_and_a_missing_file() {
    let ev = Event::FileFlow(FileFlow { proc_oid: CHILD, op_flags: OP_WRITE_SEND, ..FileFlow::default() });
    let mut r = with_process(ev.clone(), vec![child(), parent()], false);
    r.file = ROption::RSome(RArc::new(File {
        oid: [1; 20],
        restype: 'u' as i32,
        path: "ffff9ce02054c800->00ff9ce02054c000 /run/x.sock".into(),
        ..File::default()
    }));
    let text = encode(&r);
    assert!(text.contains(r#""opflags":["WRITE"]"#), "{text}");
    assert!(
        text.contains(concat!(
            r#""file":{"directory":"/run","fd":0,"is_open_read":false,"is_open_write":false,"name":"x.sock","#,
            r#""newdirectory":".","newname":".","newoid":"","newpath":"","newsymlink":"","oid":"0101010101010101010101010101010101010101","#,
            r#""openflags":["NONE"],"path":"/run/x.sock","symlink":"ffff9ce02054c800-\u003eff9ce02054c000","type":"u"}"#
        )),
        "{text}"
    );

    // The file entity was not in the cache: empty fields, a NUL type character.
    let r = with_process(ev, vec![child(), parent()], false);
    let text = encode(&r);
    assert!(
        text.contains(r#""file":{"directory":".","fd":0,"is_open_read":false,"is_open_write":false,"name":".","newdirectory":".","newname":".","newoid":"","newpath":"","newsymlink":"","oid":"","openflags":["NONE"],"path":"","symlink":"","type":"\u0000"}"#),
        "{text}"
    );
}

#[test]
fn file_event_rename_reports_new_file_and_its_state_as_fd() {
    let ev = Event::File(FileEvent {
        proc_oid: CHILD,
        ts: 1500,
        tid: 20,
        op_flags: OP_RENAME,
        file_oid: [2; 20],
        ret: -2,
        new_file_oid: ROption::RSome([3; 20]),
    });
    let mut r = with_process(ev, vec![child(), parent()], true);
    r.file = ROption::RSome(RArc::new(File {
        oid: [2; 20],
        restype: 'f' as i32,
        path: "/data/db//x/../WiredTiger.turtle.set".into(),
        ..File::default()
    }));
    r.new_file = ROption::RSome(RArc::new(File {
        state: ObjectState::Reup,
        oid: [3; 20],
        restype: 'f' as i32,
        path: "/data/db/WiredTiger.turtle".into(),
        ..File::default()
    }));
    let expected = format!(
        concat!(
            r#"{{"version":5,"endts":0,"opflags":["RENAME"],"ret":-2,"ts":1500,"type":"FE",{container},"#,
            r#""file":{{"directory":"/data/db","fd":2,"is_open_read":false,"is_open_write":false,"name":"WiredTiger.turtle.set","#,
            r#""newdirectory":"/data/db","newname":"WiredTiger.turtle","newoid":"{new_oid}","newpath":"/data/db/WiredTiger.turtle","newsymlink":"","#,
            r#""oid":"{oid}","openflags":["NONE"],"path":"/data/db//x/../WiredTiger.turtle.set","symlink":"","type":"f"}},"#,
            r#"{meta},{pod},{pproc},{proc}}}"#
        ),
        container = CONTAINER,
        new_oid = "03".repeat(20),
        oid = "02".repeat(20),
        meta = META_NODE,
        pod = POD,
        pproc = pproc(),
        proc = proc(20)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn network_flow_has_net_between_meta_and_node() {
    let ev = Event::NetworkFlow(NetworkFlow {
        proc_oid: CHILD,
        ts: 1000,
        tid: 22,
        op_flags: OP_CONNECT | OP_CLOSE | OP_WRITE_SEND | OP_READ_RECV,
        end_ts: 3000,
        sip: ip(10, 0, 0, 1) as i32,
        sport: 40000,
        dip: ip(192, 168, 59, 100) as i32,
        dport: 443,
        proto: 6,
        fd: 7,
        num_r_recv_ops: 2,
        num_w_send_ops: 1,
        num_r_recv_bytes: 92,
        num_w_send_bytes: 306,
    });
    let r = with_process(ev, vec![child(), parent()], false);
    let expected = format!(
        concat!(
            r#"{{"version":5,"endts":3000,"opflags":["CONNECT","CLOSE","SEND","RECV"],"ret":0,"ts":1000,"type":"NF","#,
            r#""flow":{{"rbytes":92,"rops":2,"wbytes":306,"wops":1}},"meta":{{"schema":4,"tracename":"1647544455"}},"#,
            r#""net":{{"dip":"192.168.59.100","dport":443,"ip":["10.0.0.1","192.168.59.100"],"port":[40000,443],"proto":6,"sip":"10.0.0.1","sport":40000}},"#,
            r#""node":{{"id":"node1","ip":"10.0.0.1"}},{pproc},{proc}}}"#
        ),
        pproc = pproc(),
        proc = proc(22)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn op_flag_names_depend_on_the_record_type_not_on_earlier_records() {
    let mut enc = JsonEncoder::new();
    let flags = OP_WRITE_SEND | OP_READ_RECV;
    let nf = with_process(
        Event::NetworkFlow(NetworkFlow { proc_oid: CHILD, op_flags: flags, ..NetworkFlow::default() }),
        vec![child()],
        false,
    );
    let ff = with_process(
        Event::FileFlow(FileFlow { proc_oid: CHILD, op_flags: flags, ..FileFlow::default() }),
        vec![child()],
        false,
    );
    let mut out = Vec::new();
    enc.encode(&nf, &mut out);
    out.push(b'\n');
    enc.encode(&ff, &mut out);
    let text = String::from_utf8(out).expect("utf8");
    let mut lines = text.lines();
    assert!(lines.next().is_some_and(|l| l.contains(r#""opflags":["SEND","RECV"]"#)));
    assert!(lines.next().is_some_and(|l| l.contains(r#""opflags":["WRITE","READ"]"#)));
}

#[test]
fn kubernetes_event_has_only_k8s_meta_node() {
    let ev = Event::K8s(K8sEvent {
        kind: 2,
        action: 1,
        ts: 77,
        message: r#"{"kind":"Pod","items":[{"name":"<x>&y"}]}"#.into(),
    });
    let mut r = FlatRecord::new(header(), ev);
    // Entities on a KE record are ignored, as upstream does.
    r.container = ROption::RSome(container());
    let expected = concat!(
        r#"{"version":5,"endts":77,"opflags":[],"ret":0,"ts":77,"type":"KE","#,
        r#""k8s":{"action":"K8S_COMPONENT_MODIFIED","kind":"K8S_PODS","message":"{\"kind\":\"Pod\",\"items\":[{\"name\":\"\u003cx\u003e\u0026y\"}]}"},"#,
        r#""meta":{"schema":4,"tracename":"1647544455"},"node":{"id":"node1","ip":"10.0.0.1"}}"#
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn unknown_parent_gives_empty_strings_and_zeros() {
    let r = with_process(exec_event(), vec![child()], false);
    let expected = format!(
        concat!(
            r#"{{"version":5,"endts":0,"opflags":["EXEC"],"ret":0,"ts":1000,"type":"PE",{meta},"#,
            r#""pproc":{{"args":"","cmdline":"","createts":100,"entry":false,"exe":"","gid":0,"group":"","name":"","oid":"{poid}","pid":10,"tty":false,"uid":0,"user":""}},"#,
            r#""proc":{{"acmdline":["/bin/ls"],"aexe":["/bin/ls"],"aname":["ls"],"apid":[20],"args":"","cmdline":"/bin/ls ","createts":200,"entry":false,"exe":"/bin/ls","gid":1000,"group":"users","name":"ls","oid":"{oid}","pid":20,"tid":20,"tty":false,"uid":1000,"user":"alice"}}}}"#
        ),
        meta = META_NODE,
        poid = h(PARENT),
        oid = h(CHILD)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn process_without_parent_pid_has_no_pproc_section() {
    let r = with_process(exec_event(), vec![parent()], false);
    let text = encode(&r);
    assert!(!text.contains("pproc"), "{text}");
    assert!(text.contains(r#""proc":{"acmdline":["/bin/bash -c ls"],"#), "{text}");
}

#[test]
fn unknown_process_gives_empty_arrays_and_the_event_ids() {
    let r = with_process(exec_event(), vec![], false);
    let expected = format!(
        concat!(
            r#"{{"version":5,"endts":0,"opflags":["EXEC"],"ret":0,"ts":1000,"type":"PE",{meta},"#,
            r#""proc":{{"acmdline":[],"aexe":[],"aname":[],"apid":[],"args":"","cmdline":" ","createts":200,"entry":false,"exe":"","gid":0,"group":"","name":".","oid":"{oid}","pid":20,"tid":20,"tty":false,"uid":0,"user":""}}}}"#
        ),
        meta = META_NODE,
        oid = h(CHILD)
    );
    assert_eq!(encode(&r), expected);
}

#[test]
fn strings_are_escaped_html_safe_and_not_quote_trimmed() {
    let odd = RArc::new(Process {
        oid: CHILD,
        exe: "/usr/bin/'quoted'".into(),
        exe_args: "\"<script>\" & \\ \t\u{1}\u{2028}é".into(),
        ..Process::default()
    });
    let mut r = with_process(exec_event(), vec![odd], false);
    r.header = RArc::new(Header { version: 5, exporter: "n\"1".into(), ip: "NA".into(), filename: "".into() });
    let text = encode(&r);
    assert!(text.contains(r#""meta":{"schema":5,"tracename":"."},"node":{"id":"n\"1","ip":"NA"}"#), "{text}");
    let args = r#""\"\u003cscript\u003e\" \u0026 \\ \t\u0001\u2028é""#;
    assert!(text.contains(&format!(r#""args":{args}"#)), "{text}");
    assert!(text.contains(r#""aexe":["/usr/bin/'quoted'"],"aname":["'quoted'"]"#), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(value["proc"]["args"], "\"<script>\" & \\ \t\u{1}\u{2028}é");
}

#[test]
fn cached_fragments_follow_entity_identity() {
    let mut enc = JsonEncoder::new();
    let ancestry = RArc::new(RVec::from(vec![child(), parent()]));
    let mut r = with_process(exec_event(), vec![], true);
    r.ancestry = ancestry.clone();
    let mut first = Vec::new();
    enc.encode(&r, &mut first);
    // Same entities, other per-record values: only those change.
    if let Event::Process(e) = &mut r.event {
        e.tid = 99;
        e.ts = 1001;
    }
    let mut second = Vec::new();
    enc.encode(&r, &mut second);
    let expected_second = String::from_utf8(first.clone())
        .expect("utf8")
        .replace(r#""tid":20"#, r#""tid":99"#)
        .replace(r#""ts":1000"#, r#""ts":1001"#);
    assert_eq!(String::from_utf8(second).expect("utf8"), expected_second);
    let (hits, _) = enc.cache_stats();
    assert!(hits >= 4, "header, container, pod and ancestry must be reused, hits = {hits}");
    // A different container with the same address cannot appear while the old one is cached;
    // a different container object yields its own fragment.
    let other = RArc::new(Container { id: "zz".into(), ..Container::default() });
    r.container = ROption::RSome(other);
    let mut third = Vec::new();
    enc.encode(&r, &mut third);
    assert!(String::from_utf8(third).expect("utf8").contains(r#""container":{"id":"zz","#));
}
