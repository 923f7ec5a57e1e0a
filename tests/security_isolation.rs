//! Workspace isolation and RBAC against a three-node shard of real `tmc
//! serve` processes: one named attack per row, each with the exact status
//! code it must get and a check, through the admin, that no data crossed a
//! workspace boundary and nothing was written. Requests are raw HTTPS
//! (hyper over rustls), with bearer tokens or client certificates, so no
//! client library hides a status; `kubectl auth can-i` (real kubectl)
//! closes the file.
//!
//! The cast (token users are in the token file the nodes start with):
//! - `admin`: `system:masters`;
//! - `alice`: may create workspaces in `root`, created `root:a` (and so is
//!   its admin through `workspace-admin`) and `root:a:b`;
//! - `bob`: created `root:b`; `root:ab` is the admin's;
//! - `carol`: in `root:a`, namespace `default`: reads ConfigMaps and
//!   writes Roles and RoleBindings (so she can try to escalate);
//! - `dave`: authenticated, bound nowhere;
//! - `erin`: a client certificate in group `team-a`, which may read
//!   ConfigMaps in `root:a`/`default`;
//! - `frank`: in `root:a`/`default`, may create Roles and RoleBindings,
//!   `escalate` Roles and `bind` the ClusterRole `cluster-admin` only.

use serde_json::{json, Value};
use tmc::api::tls;
use tmc::testcluster::members::kubectl_with;
use tmc::testcluster::ApiClient;
use tmc::testcluster::TestCluster;

const J: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const CAROL: &str = "carol-token-0123456789";
const DAVE: &str = "dave-token-0123456789";
const FRANK: &str = "frank-token-0123456789";
/// root:b's Secret value as stored (base64 of "b-secret-value").
const B_SECRET_B64: &str = "Yi1zZWNyZXQtdmFsdWU";

/// How a client proves who it is.
#[derive(Clone)]
enum Cred {
    None,
    /// The whole `Authorization` header value.
    Header(String),
    Token(&'static str),
    Admin,
    /// A client certificate and key (PEM).
    Cert(String, String),
    /// A client certificate and key, and an `Authorization` header.
    CertAndHeader(String, String, String),
}

/// Node `node`'s API through the harness's raw client (one connection per
/// request, every status and body as sent), as whoever a [`Cred`] says.
struct Api {
    anonymous: ApiClient,
    admin: String,
}

impl Api {
    fn new(s: &TestCluster, node: u64) -> Api {
        Api {
            anonymous: s.anonymous_client(node),
            admin: s.token(),
        }
    }

    /// The client with `cred`'s certificate and `Authorization` header.
    fn client(&self, cred: &Cred) -> ApiClient {
        let c = match cred {
            Cred::Cert(cert, key) | Cred::CertAndHeader(cert, key, _) => {
                self.anonymous.clone().client_cert(cert, key).unwrap()
            }
            _ => self.anonymous.clone(),
        };
        match cred {
            Cred::Header(h) | Cred::CertAndHeader(_, _, h) => c.authorization(h),
            Cred::Token(t) => c.bearer(t),
            Cred::Admin => c.bearer(&self.admin),
            Cred::None | Cred::Cert(..) => c,
        }
    }

    async fn call(&self, cred: &Cred, method: &str, path: &str, body: Value) -> (u16, Value) {
        let ct = if method == "PATCH" { MERGE } else { J };
        self.call_as(cred, method, path, ct, body).await
    }

    /// [`Api::call`] with a content type of the caller's choice.
    async fn call_as(
        &self,
        cred: &Cred,
        method: &str,
        path: &str,
        ct: &str,
        body: Value,
    ) -> (u16, Value) {
        self.try_call_as(cred, method, path, ct, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Api::call_as`], or why no answer came.
    async fn try_call_as(
        &self,
        cred: &Cred,
        method: &str,
        path: &str,
        ct: &str,
        body: Value,
    ) -> Result<(u16, Value), String> {
        let raw = match &body {
            Value::Null => Vec::new(),
            v => serde_json::to_vec(v).unwrap(),
        };
        self.client(cred).call_raw(method, path, ct, raw).await
    }

    /// As the admin; panics unless the status is `want`.
    async fn admin(&self, method: &str, path: &str, body: Value, want: u16) -> Value {
        let (code, v) = self.call(&Cred::Admin, method, path, body).await;
        assert_eq!(code, want, "admin {method} {path}: {v}");
        v
    }

    /// The names of the objects the admin sees at a list path.
    async fn admin_names(&self, path: &str) -> Vec<String> {
        let v = self.admin("GET", path, Value::Null, 200).await;
        names(&v)
    }

    /// Opens a watch and returns its events until one names `stop`.
    async fn watch_until(&self, cred: &Cred, path: &str, stop: &str) -> Vec<Value> {
        let mut w = self
            .client(cred)
            .try_watch(path, None)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ev = tokio::time::timeout_at(deadline, w.next_event())
                .await
                .unwrap_or_else(|_| panic!("watch {path}: {stop} never came; saw {events:?}"))
                .expect("watch ended");
            let done = ev["object"]["metadata"]["name"] == stop;
            events.push(ev);
            if done {
                return events;
            }
        }
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn cm(name: &str, team: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"team": team}}, "data": {"k": "v"}})
}

fn secret(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
           "stringData": {"password": value}, "data": {"password": "c2VjcmV0"}})
}

fn workspace(name: &str) -> Value {
    json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
           "metadata": {"name": name}, "spec": {}})
}

fn role(kind: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "rules": rules})
}

fn binding(kind: &str, name: &str, ref_kind: &str, ref_name: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": ref_name},
           "subjects": subjects})
}

fn user(name: &str) -> Value {
    json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}])
}

/// A continue token as tmc writes them (base64 of `{"rv", "start"}`),
/// naming revision `rv` and a start key in workspace `w`'s ConfigMaps of
/// `default`.
fn forged_continue(rv: u64, w: &str) -> String {
    use base64::Engine as _;
    let start = format!("/registry/core/configmaps/{w}/default/");
    let token = json!({"rv": rv,
        "start": base64::engine::general_purpose::STANDARD.encode(start)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn ws(w: &str, rest: &str) -> String {
    format!("/clusters/{w}{rest}")
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// One attack: a name, what it tries, who, the request, the exact status
/// (and reason) it must get.
struct Case {
    name: &'static str,
    attack: &'static str,
    cred: Cred,
    method: &'static str,
    path: String,
    body: Value,
    code: u16,
    reason: &'static str,
    /// The body's content type when not the default (JSON; a merge patch
    /// for PATCH).
    content_type: Option<&'static str>,
}

impl Case {
    /// The row with its body sent as `ct`.
    fn with_content_type(mut self, ct: &'static str) -> Case {
        self.content_type = Some(ct);
        self
    }
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &'static str,
    attack: &'static str,
    cred: Cred,
    method: &'static str,
    path: String,
    body: Value,
    code: u16,
    reason: &'static str,
) -> Case {
    Case {
        name,
        attack,
        cred,
        method,
        path,
        body,
        code,
        reason,
        content_type: None,
    }
}

/// Runs a row and checks it: status and reason; a 401 says only
/// "Unauthorized"; no response carries a Secret's data; a 403 in a
/// workspace (outside RBAC) has Kubernetes' message shape, with the
/// workspace. Returns what failed, empty when the row passed.
async fn run(api: &Api, c: &Case) -> Vec<String> {
    let ct = match (c.content_type, c.method) {
        (Some(ct), _) => ct,
        (None, "PATCH") => MERGE,
        (None, _) => J,
    };
    let answer = api
        .try_call_as(&c.cred, c.method, &c.path, ct, c.body.clone())
        .await;
    let (code, v) = match answer {
        Ok(a) => a,
        Err(e) => {
            return vec![format!(
                "{}: {} ({} {}): want {}, got no answer: {e}",
                c.name, c.attack, c.method, c.path, c.code
            )]
        }
    };
    let mut failed = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            failed.push(what.to_string());
        }
    };
    check(code == c.code, &format!("want {}, got {code}", c.code));
    if !c.reason.is_empty() {
        check(v["kind"] == "Status", "kind is not Status");
        check(
            v["reason"] == c.reason,
            &format!("want reason {}, got {}", c.reason, v["reason"]),
        );
        check(
            v["code"] == c.code,
            &format!("code {} in the body", v["code"]),
        );
    }
    if c.code == 401 {
        check(
            v["message"] == "Unauthorized",
            "message is not just \"Unauthorized\"",
        );
        check(v.get("details").is_none(), "a 401 with details");
    }
    let text = v.to_string();
    check(
        !text.contains("b-secret-value") && !text.contains(B_SECRET_B64),
        "a Secret's data leaked",
    );
    if c.code == 403
        && c.reason == "Forbidden"
        && c.path.starts_with("/clusters/root")
        && !c.path.contains(RBAC)
    {
        // Kubernetes' message shape, with the workspace.
        let msg = v["message"].as_str().unwrap_or_default();
        check(
            msg.contains(" is forbidden: User \""),
            "a message without \" is forbidden: User \"\"",
        );
        check(
            msg.contains(" in workspace \""),
            "a message without \" in workspace \"\"",
        );
        check(v["details"]["kind"].is_string(), "no details.kind");
    }
    if failed.is_empty() {
        return failed;
    }
    vec![format!(
        "{}: {} ({} {}): {}; answered {v}",
        c.name,
        c.attack,
        c.method,
        c.path,
        failed.join("; ")
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_isolation_attacks() {
    let tokens = format!(
        "{ALICE},alice,u-alice\n{BOB},bob,u-bob\n{CAROL},carol,u-carol\n{DAVE},dave,u-dave,\"devs\"\n{FRANK},frank,u-frank\n"
    );
    let s = TestCluster::start_with_tokens(&tokens);
    let api1 = Api::new(&s, 1);
    let api = Api::new(&s, 3);
    let files = tls::TlsFiles::new(&s.tls_dir());
    let alice = Cred::Token(ALICE);
    let bob = Cred::Token(BOB);
    let carol = Cred::Token(CAROL);
    let dave = Cred::Token(DAVE);
    let frank = Cred::Token(FRANK);

    // ------------------------------------------------------------------
    // Setup, through the admin and the creators themselves.
    api.admin(
        "POST",
        &ws("root", &format!("{RBAC}/clusterroles")),
        role(
            "ClusterRole",
            "workspace-creator",
            json!([{"verbs": ["create", "get"], "apiGroups": ["tenancy.kcp.io"], "resources": ["workspaces"]}]),
        ),
        201,
    )
    .await;
    api.admin(
        "POST",
        &ws("root", &format!("{RBAC}/clusterrolebindings")),
        binding(
            "ClusterRoleBinding",
            "creators",
            "ClusterRole",
            "workspace-creator",
            json!([{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}]),
        ),
        201,
    )
    .await;
    let wss = "/apis/tenancy.kcp.io/v1alpha1/workspaces";
    // The creator of a workspace becomes its admin.
    let (c, v) = api
        .call(&alice, "POST", &ws("root", wss), workspace("a"))
        .await;
    assert_eq!(c, 201, "alice creates root:a: {v}");
    let (c, v) = api
        .call(&bob, "POST", &ws("root", wss), workspace("b"))
        .await;
    assert_eq!(c, 201, "bob creates root:b: {v}");
    api.admin("POST", &ws("root", wss), workspace("ab"), 201)
        .await;
    let (c, v) = api
        .call(&alice, "POST", &ws("root:a", wss), workspace("b"))
        .await;
    assert_eq!(c, 201, "alice creates root:a:b as admin of root:a: {v}");
    let crb = api
        .admin(
            "GET",
            &ws(
                "root:a",
                &format!("{RBAC}/clusterrolebindings/workspace-admin"),
            ),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(crb["subjects"][0]["name"], "alice");
    assert_eq!(crb["roleRef"]["name"], "cluster-admin");

    // A Deployment in root:a, for the scale subresource rows.
    api.admin(
        "POST",
        &ws("root:a", DEPLOYS),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}),
        201,
    )
    .await;

    // Data: the same names in several workspaces.
    let (c, _) = api
        .call(&bob, "POST", &ws("root:b", CMS), cm("cm-b", "b"))
        .await;
    assert_eq!(c, 201);
    let (c, _) = api
        .call(
            &bob,
            "POST",
            &ws("root:b", SECRETS),
            secret("s-b", "b-secret-value"),
        )
        .await;
    assert_eq!(c, 201);
    let (c, _) = api
        .call(&bob, "POST", &ws("root:b", &format!("{RBAC}/clusterroles")), role(
            "ClusterRole",
            "secret-reader",
            json!([{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["secrets"]}]),
        ))
        .await;
    assert_eq!(c, 201);
    for (w, cred) in [("root:a", &alice), ("root:a:b", &alice)] {
        let (c, v) = api.call(cred, "POST", &ws(w, CMS), cm("cm-a", "a")).await;
        assert_eq!(c, 201, "{w}: {v}");
        let (c, _) = api
            .call(
                cred,
                "POST",
                &ws(w, SECRETS),
                secret("s-a", "a-secret-value"),
            )
            .await;
        assert_eq!(c, 201);
    }
    api.admin("POST", &ws("root:ab", CMS), cm("cm-ab", "b"), 201)
        .await;
    // carol: reads ConfigMaps and writes Roles and RoleBindings in
    // root:a/default; erin's group reads ConfigMaps there.
    let rbac_a = |rest: &str| ws("root:a", &format!("{RBAC}/namespaces/default/{rest}"));
    for (path, body) in [
        (
            rbac_a("roles"),
            role(
                "Role",
                "cm-reader",
                json!([{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]}]),
            ),
        ),
        (
            rbac_a("roles"),
            role(
                "Role",
                "rbac-writer",
                json!([{"verbs": ["get", "list", "create", "update", "patch"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]}]),
            ),
        ),
        (
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "carol-reader",
                "Role",
                "cm-reader",
                user("carol"),
            ),
        ),
        (
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "carol-writer",
                "Role",
                "rbac-writer",
                user("carol"),
            ),
        ),
        (
            rbac_a("roles"),
            role(
                "Role",
                "escalator",
                json!([
                    {"verbs": ["create"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]},
                    {"verbs": ["escalate"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"]},
                    {"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"]},
                ]),
            ),
        ),
        (
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "frank-escalator",
                "Role",
                "escalator",
                user("frank"),
            ),
        ),
        (
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "team-a-reader",
                "Role",
                "cm-reader",
                json!([{"kind": "Group", "name": "team-a"}]),
            ),
        ),
    ] {
        let (c, v) = api.call(&alice, "POST", &path, body).await;
        assert_eq!(c, 201, "alice sets up {path}: {v}");
    }

    // Continue token and resourceVersion of root:b, for later rows.
    let page = api
        .admin(
            "GET",
            &ws("root:b", "/api/v1/configmaps?limit=1"),
            Value::Null,
            200,
        )
        .await;
    let b_rv = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    api.admin("POST", &ws("root:b", CMS), cm("cm-b2", "b"), 201)
        .await;
    let page = api
        .admin(
            "GET",
            &ws("root:b", &format!("{CMS}?limit=1")),
            Value::Null,
            200,
        )
        .await;
    let b_token = page["metadata"]["continue"].as_str().unwrap().to_string();

    // Certificates.
    let erin = tls::issue_client_cert(&files, "erin", &["team-a".into()], None).unwrap();
    let erin_pem = (erin.cert_pem.clone(), erin.key_pem.clone());
    let erin = Cred::Cert(erin.cert_pem, erin.key_pem);
    let expired = tls::issue_client_cert(
        &files,
        "erin",
        &["system:masters".into()],
        Some(((2020, 1, 1), (2021, 1, 1))),
    )
    .unwrap();
    let not_yet = tls::issue_client_cert(
        &files,
        "erin",
        &["system:masters".into()],
        Some(((2091, 1, 1), (2092, 1, 1))),
    )
    .unwrap();
    let foreign_dir = s.dir().join("foreign");
    let foreign_files = tls::ensure_material(&foreign_dir, &[]).unwrap();
    let foreign =
        tls::issue_client_cert(&foreign_files, "admin", &["system:masters".into()], None).unwrap();
    let masters_cert =
        tls::issue_client_cert(&files, "mallory-admin", &["system:masters".into()], None).unwrap();

    // ------------------------------------------------------------------
    // The table.
    let forb = "Forbidden";
    let unauth = "Unauthorized";
    let get = |w: &str, rest: &str| ws(w, rest);
    let secret_b = get("root:b", &format!("{SECRETS}/s-b"));
    let cases = vec![
        // Authentication.
        case(
            "no-credentials",
            "read root:a's ConfigMaps without credentials",
            Cred::None,
            "GET",
            get("root:a", CMS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "no-credentials-write",
            "create a ConfigMap without credentials",
            Cred::None,
            "POST",
            get("root:b", CMS),
            cm("anon", "x"),
            401,
            unauth,
        ),
        case(
            "malformed-token",
            "a bearer token with spaces and junk",
            Cred::Header("Bearer not a token at all".into()),
            "GET",
            get("root:a", CMS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "empty-bearer",
            "an empty bearer token",
            Cred::Header("Bearer ".into()),
            "GET",
            get("root:a", CMS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "oversized-token",
            "a 64 KiB token",
            Cred::Header(format!("Bearer {}", "A".repeat(64 * 1024))),
            "GET",
            get("root:a", CMS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "basic-auth",
            "HTTP basic credentials instead of a token",
            Cred::Header("Basic YWRtaW46YWRtaW4=".into()),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "admin-token-prefix",
            "the admin token minus its last character",
            Cred::Header(format!("Bearer {}", &api.admin[..api.admin.len() - 1])),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "version-needs-credentials",
            "read /version anonymously (only livez/readyz are open)",
            Cred::None,
            "GET",
            "/version".into(),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "expired-certificate",
            "an expired certificate of the CA claiming system:masters",
            Cred::Cert(expired.cert_pem.clone(), expired.key_pem.clone()),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "not-yet-valid-certificate",
            "a certificate valid only from 2091",
            Cred::Cert(not_yet.cert_pem.clone(), not_yet.key_pem.clone()),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "foreign-ca-certificate",
            "a certificate from another CA claiming admin in system:masters",
            Cred::Cert(foreign.cert_pem.clone(), foreign.key_pem.clone()),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            401,
            unauth,
        ),
        case(
            "bad-token-beats-good-cert",
            "erin's good certificate with a bad token: the token decides",
            Cred::CertAndHeader(erin_pem.0.clone(), erin_pem.1.clone(), "Bearer nope".into()),
            "GET",
            get("root:a", CMS),
            Value::Null,
            401,
            unauth,
        ),
        // Reads across workspaces.
        case(
            "get-secret-other-ws",
            "alice (admin of root:a) reads root:b's Secret",
            alice.clone(),
            "GET",
            secret_b.clone(),
            Value::Null,
            403,
            forb,
        ),
        case(
            "list-secrets-other-ws",
            "alice lists root:b's Secrets",
            alice.clone(),
            "GET",
            get("root:b", SECRETS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "watch-secrets-other-ws",
            "alice watches root:b's Secrets",
            alice.clone(),
            "GET",
            get("root:b", &format!("{SECRETS}?watch=true")),
            Value::Null,
            403,
            forb,
        ),
        case(
            "watch-path-other-ws",
            "alice watches root:b through the legacy /watch/ prefix",
            alice.clone(),
            "GET",
            get("root:b", "/api/v1/watch/namespaces/default/secrets"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "label-selector-other-ws",
            "alice lists root:b ConfigMaps with labelSelector team=b",
            alice.clone(),
            "GET",
            get("root:b", &format!("{CMS}?labelSelector=team%3Db")),
            Value::Null,
            403,
            forb,
        ),
        case(
            "field-selector-other-ws",
            "alice lists root:b ConfigMaps by fieldSelector metadata.name",
            alice.clone(),
            "GET",
            get(
                "root:b",
                "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm-b",
            ),
            Value::Null,
            403,
            forb,
        ),
        case(
            "all-namespaces-other-ws",
            "alice lists every namespace's Secrets in root:b",
            alice.clone(),
            "GET",
            get("root:b", "/api/v1/secrets"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "namespace-get-other-ws",
            "alice reads root:b's default namespace",
            alice.clone(),
            "GET",
            get("root:b", "/api/v1/namespaces/default"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "same-name-other-ws",
            "alice reads Secret s-b by name in her own workspace (it lives in root:b)",
            alice.clone(),
            "GET",
            get("root:a", &format!("{SECRETS}/s-b")),
            Value::Null,
            404,
            "NotFound",
        ),
        case(
            "wildcard-list-admin-of-ws",
            "alice, admin of root:a, lists Secrets of every workspace with *",
            alice.clone(),
            "GET",
            get("*", "/api/v1/secrets"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "wildcard-watch",
            "bob watches every workspace's Secrets with *",
            bob.clone(),
            "GET",
            get("*", "/api/v1/secrets?watch=true"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "wildcard-unbound",
            "dave lists ConfigMaps of every workspace with *",
            dave.clone(),
            "GET",
            get("*", "/api/v1/configmaps"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "wildcard-cert-user",
            "erin (certificate) lists with *",
            erin.clone(),
            "GET",
            get("*", "/api/v1/configmaps"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "wildcard-write",
            "the admin creates through * (lists and watches only)",
            Cred::Admin,
            "POST",
            get("*", CMS),
            cm("star", "x"),
            405,
            "MethodNotAllowed",
        ),
        case(
            "continue-token-other-ws",
            "alice pages root:a with a continue token of a root:b list",
            alice.clone(),
            "GET",
            get("root:a", &format!("{CMS}?limit=1&continue={b_token}")),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "continue-token-other-ws-admin",
            "even the admin cannot read root:b through root:a with its token",
            Cred::Admin,
            "GET",
            get("root:a", &format!("{CMS}?limit=1&continue={b_token}")),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "continue-token-wildcard-other-list",
            "a root:b token used on a * list of another resource",
            Cred::Admin,
            "GET",
            get("*", &format!("/api/v1/secrets?limit=1&continue={b_token}")),
            Value::Null,
            400,
            "BadRequest",
        ),
        // Prefixes of workspace names.
        case(
            "prefix-sibling",
            "carol (bound in root:a) lists ConfigMaps of root:ab",
            carol.clone(),
            "GET",
            get("root:ab", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "prefix-child",
            "carol lists ConfigMaps of root:a:b",
            carol.clone(),
            "GET",
            get("root:a:b", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "prefix-parent",
            "carol lists ConfigMaps of root",
            carol.clone(),
            "GET",
            get("root", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "prefix-admin-sibling",
            "alice, admin of root:a, reads root:ab",
            alice.clone(),
            "GET",
            get("root:ab", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "nonexistent-ws",
            "dave probes a workspace that does not exist (403, not 404)",
            dave.clone(),
            "GET",
            get("root:nope", CMS),
            Value::Null,
            403,
            forb,
        ),
        // Path tricks.
        case(
            "dotdot",
            "/clusters/root:a/../root:b",
            alice.clone(),
            "GET",
            format!("/clusters/root:a/../root:b{SECRETS}"),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "encoded-slash",
            "root:a%2F..%2Froot:b as the workspace",
            alice.clone(),
            "GET",
            format!("/clusters/root:a%2F..%2Froot:b{SECRETS}"),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "encoded-slash-name",
            "a%2F..%2Fs-b as the object name",
            alice.clone(),
            "GET",
            get("root:a", &format!("{SECRETS}/a%2F..%2Fs-b")),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "encoded-colon",
            "root%3Ab is still root:b",
            alice.clone(),
            "GET",
            format!("/clusters/root%3Ab{SECRETS}"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "upper-case-ws",
            "ROOT:B as the workspace",
            alice.clone(),
            "GET",
            format!("/clusters/ROOT:B{SECRETS}"),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "upper-case-prefix",
            "/Clusters/root:b",
            alice.clone(),
            "GET",
            format!("/Clusters/root:b{SECRETS}"),
            Value::Null,
            404,
            "NotFound",
        ),
        case(
            "double-slash",
            "an empty segment after the workspace",
            alice.clone(),
            "GET",
            format!("/clusters/root:a/{SECRETS}"),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "trailing-dotdot",
            "a name of ..",
            alice.clone(),
            "GET",
            get("root:b", &format!("{SECRETS}/..")),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "virtual-ws-core",
            "the admin reads Secrets through the tmc virtual workspace",
            Cred::Admin,
            "GET",
            format!("/services/tmc/clusters/root:b{SECRETS}"),
            Value::Null,
            404,
            "NotFound",
        ),
        case(
            "virtual-ws-core-user",
            "alice reads root:a Secrets through the virtual workspace",
            alice.clone(),
            "GET",
            format!("/services/tmc/clusters/root:a{SECRETS}"),
            Value::Null,
            404,
            "NotFound",
        ),
        case(
            "virtual-ws-other",
            "alice lists root:b's placements through the virtual workspace",
            alice.clone(),
            "GET",
            "/services/tmc/clusters/root:b/apis/tmc.kcp.io/v1alpha1/workloadplacements".into(),
            Value::Null,
            403,
            forb,
        ),
        // Writes across workspaces.
        case(
            "create-other-ws",
            "alice creates a ConfigMap in root:b",
            alice.clone(),
            "POST",
            get("root:b", CMS),
            cm("evil", "x"),
            403,
            forb,
        ),
        case(
            "patch-other-ws",
            "alice patches root:b's ConfigMap",
            alice.clone(),
            "PATCH",
            get("root:b", &format!("{CMS}/cm-b")),
            json!({"data": {"k": "evil"}}),
            403,
            forb,
        ),
        case(
            "delete-other-ws",
            "alice deletes root:b's Secret",
            alice.clone(),
            "DELETE",
            secret_b.clone(),
            Value::Null,
            403,
            forb,
        ),
        case(
            "deletecollection-other-ws",
            "alice deletes all of root:b's Secrets",
            alice.clone(),
            "DELETE",
            get("root:b", SECRETS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "workspace-in-other-ws",
            "alice creates a child workspace in root:b to become its admin",
            alice.clone(),
            "POST",
            get("root:b", wss),
            workspace("mine"),
            403,
            forb,
        ),
        case(
            "binding-in-other-ws",
            "alice binds herself to cluster-admin in root:b",
            alice.clone(),
            "POST",
            get("root:b", &format!("{RBAC}/clusterrolebindings")),
            binding(
                "ClusterRoleBinding",
                "evil",
                "ClusterRole",
                "cluster-admin",
                user("alice"),
            ),
            403,
            forb,
        ),
        case(
            "namespace-in-other-ws",
            "alice creates a namespace in root:b",
            alice.clone(),
            "POST",
            get("root:b", "/api/v1/namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "evil"}}),
            403,
            forb,
        ),
        // Inside a workspace: the unbound and the limited.
        case(
            "unbound-read",
            "dave reads root:a's ConfigMaps",
            dave.clone(),
            "GET",
            get("root:a", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "unbound-group",
            "dave's group devs has no binding anywhere",
            dave.clone(),
            "GET",
            get("root:b", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "limited-secrets",
            "carol (ConfigMap reader) reads root:a's Secrets",
            carol.clone(),
            "GET",
            get("root:a", SECRETS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "limited-other-namespace",
            "carol lists ConfigMaps across all namespaces of root:a",
            carol.clone(),
            "GET",
            get("root:a", "/api/v1/configmaps"),
            Value::Null,
            403,
            forb,
        ),
        case(
            "limited-write",
            "carol updates a ConfigMap she may only read",
            carol.clone(),
            "PATCH",
            get("root:a", &format!("{CMS}/cm-a")),
            json!({"data": {"k": "evil"}}),
            403,
            forb,
        ),
        case(
            "cert-group-other-ws",
            "erin (team-a certificate) reads root:b's ConfigMaps",
            erin.clone(),
            "GET",
            get("root:b", CMS),
            Value::Null,
            403,
            forb,
        ),
        case(
            "cert-group-secrets",
            "erin reads root:a's Secrets",
            erin.clone(),
            "GET",
            get("root:a", SECRETS),
            Value::Null,
            403,
            forb,
        ),
        // Escalation.
        case(
            "escalate-role",
            "carol creates a Role that reads Secrets",
            carol.clone(),
            "POST",
            rbac_a("roles"),
            role(
                "Role",
                "evil-role",
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]),
            ),
            403,
            forb,
        ),
        case(
            "escalate-role-wildcard",
            "carol creates a Role with verbs *",
            carol.clone(),
            "POST",
            rbac_a("roles"),
            role(
                "Role",
                "evil-star",
                json!([{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]),
            ),
            403,
            forb,
        ),
        case(
            "escalate-role-patch",
            "carol patches cm-reader to add Secrets",
            carol.clone(),
            "PATCH",
            rbac_a("roles/cm-reader"),
            json!({"rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps", "secrets"]}]}),
            403,
            forb,
        ),
        case(
            "escalate-binding",
            "carol binds herself to cluster-admin in default",
            carol.clone(),
            "POST",
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "evil-admin",
                "ClusterRole",
                "cluster-admin",
                user("carol"),
            ),
            403,
            forb,
        ),
        case(
            "escalate-binding-missing-role",
            "carol binds to a ClusterRole that exists only in root:b",
            carol.clone(),
            "POST",
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "evil-foreign",
                "ClusterRole",
                "secret-reader",
                user("carol"),
            ),
            403,
            forb,
        ),
        case(
            "escalate-clusterrolebinding",
            "carol creates a ClusterRoleBinding (no rights on them)",
            carol.clone(),
            "POST",
            ws("root:a", &format!("{RBAC}/clusterrolebindings")),
            binding(
                "ClusterRoleBinding",
                "evil-crb",
                "ClusterRole",
                "cluster-admin",
                user("carol"),
            ),
            403,
            forb,
        ),
        case(
            "roleref-change",
            "carol repoints her reader binding at rbac-writer",
            carol.clone(),
            "PATCH",
            rbac_a("rolebindings/carol-reader"),
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-writer"}}),
            422,
            "Invalid",
        ),
        case(
            "crb-to-role",
            "alice creates a ClusterRoleBinding that names a Role",
            alice.clone(),
            "POST",
            ws("root:a", &format!("{RBAC}/clusterrolebindings")),
            binding(
                "ClusterRoleBinding",
                "bad-kind",
                "Role",
                "cm-reader",
                user("dave"),
            ),
            422,
            "Invalid",
        ),
        case(
            "masters-certificate",
            "a CA-signed certificate in system:masters is the admin (control)",
            Cred::Cert(masters_cert.cert_pem.clone(), masters_cert.key_pem.clone()),
            "GET",
            get("root:b", "/api/v1/namespaces/default"),
            Value::Null,
            200,
            "",
        ),
        // Controls: what the attackers may do still works.
        case(
            "control-carol-reads",
            "carol reads ConfigMaps in root:a/default",
            carol.clone(),
            "GET",
            get("root:a", CMS),
            Value::Null,
            200,
            "",
        ),
        case(
            "control-carol-binds-held-rights",
            "carol binds dave to cm-reader (rights she holds)",
            carol.clone(),
            "POST",
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "dave-reader",
                "Role",
                "cm-reader",
                user("dave"),
            ),
            201,
            "",
        ),
        case(
            "control-escalate-verb",
            "frank, who may escalate roles, creates a Role reading Secrets",
            frank.clone(),
            "POST",
            rbac_a("roles"),
            role(
                "Role",
                "frank-secrets",
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]),
            ),
            201,
            "",
        ),
        case(
            "control-bind-verb",
            "frank, who may bind cluster-admin, binds user nobody to it",
            frank.clone(),
            "POST",
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "nobody-admin",
                "ClusterRole",
                "cluster-admin",
                user("nobody"),
            ),
            201,
            "",
        ),
        case(
            "bind-verb-is-per-name",
            "frank binds to cm-reader, which his bind right does not name",
            frank.clone(),
            "POST",
            rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "frank-cm",
                "Role",
                "cm-reader",
                user("frank"),
            ),
            403,
            forb,
        ),
        case(
            "escalate-verb-is-per-kind",
            "frank (escalate on roles) creates a ClusterRole",
            frank.clone(),
            "POST",
            ws("root:a", &format!("{RBAC}/clusterroles")),
            role(
                "ClusterRole",
                "frank-cr",
                json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]),
            ),
            403,
            forb,
        ),
        case(
            "control-erin-reads",
            "erin (certificate, group team-a) reads ConfigMaps in root:a/default",
            erin.clone(),
            "GET",
            get("root:a", CMS),
            Value::Null,
            200,
            "",
        ),
        // --- read consistency: watch parameters, future resourceVersions (issue 13) ---
        case(
            "watch-negative-timeout",
            "alice watches root:a with a negative timeoutSeconds",
            alice.clone(),
            "GET",
            get("root:a", &format!("{CMS}?watch=true&timeoutSeconds=-1")),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "watch-timeout-beyond-int64",
            "alice watches root:a with a timeoutSeconds no integer holds",
            alice.clone(),
            "GET",
            get(
                "root:a",
                &format!("{CMS}?watch=true&timeoutSeconds=99999999999999999999999"),
            ),
            Value::Null,
            400,
            "BadRequest",
        ),
        case(
            "list-future-resource-version",
            "alice lists root:a at a resourceVersion far in the future",
            alice.clone(),
            "GET",
            get("root:a", &format!("{CMS}?resourceVersion=99999999999")),
            Value::Null,
            504,
            "Timeout",
        ),
        // --- placement locations and object shapes (issue 13) ---
        case(
            "placement-other-location",
            "alice places root:a's workloads on root:b's clusters",
            alice.clone(),
            "POST",
            ws("root:a", "/apis/tmc.kcp.io/v1alpha1/workloadplacements"),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                   "metadata": {"name": "steal"},
                   "spec": {"locationWorkspace": "root:b", "strategy": {"type": "All"}}}),
            403,
            forb,
        ),
        case(
            "placement-absent-location",
            "alice learns whether root:nope exists from a placement's location",
            alice.clone(),
            "POST",
            ws("root:a", "/apis/tmc.kcp.io/v1alpha1/workloadplacements"),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                   "metadata": {"name": "probe"},
                   "spec": {"locationWorkspace": "root:nope", "strategy": {"type": "All"}}}),
            403,
            forb,
        ),
        case(
            "placement-forged-author",
            "alice names the admin (system:masters) as her placement's author",
            alice.clone(),
            "POST",
            ws("root:a", "/apis/tmc.kcp.io/v1alpha1/workloadplacements"),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                   "metadata": {"name": "forged", "annotations": {"tmc.kcp.io/author":
                       "{\"username\":\"admin\",\"groups\":[\"system:masters\"]}"}},
                   "spec": {"locationWorkspace": "root:b", "strategy": {"type": "All"}}}),
            403,
            forb,
        ),
        case(
            "control-placement-own-location",
            "alice places on her own workspace's clusters (no grant needed)",
            alice.clone(),
            "POST",
            ws("root:a", "/apis/tmc.kcp.io/v1alpha1/workloadplacements"),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                   "metadata": {"name": "own"},
                   "spec": {"locationWorkspace": "root:a", "strategy": {"type": "All"}}}),
            201,
            "",
        ),
        case(
            "placement-location-patch",
            "alice moves her placement onto root:b's clusters with a patch",
            alice.clone(),
            "PATCH",
            ws("root:a", "/apis/tmc.kcp.io/v1alpha1/workloadplacements/own"),
            json!({"spec": {"locationWorkspace": "root:b"}}),
            403,
            forb,
        ),
        case(
            "annotations-not-a-map",
            "alice stores a ConfigMap whose annotations are a string (it stopped sync)",
            alice.clone(),
            "POST",
            ws("root:a", CMS),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "shape", "annotations": "x"}}),
            400,
            "BadRequest",
        ),
        case(
            "annotations-not-a-map-patch",
            "alice patches her ConfigMap's annotations into a string",
            alice.clone(),
            "PATCH",
            ws("root:a", &format!("{CMS}/cm-a")),
            json!({"metadata": {"annotations": "x"}}),
            422,
            "Invalid",
        ),
        // --- server-owned annotations (issue 13) ---
        case(
            "forged-sync-clusters",
            "alice names another location's cluster in the annotation that tells sync where copies are",
            alice.clone(),
            "POST",
            ws("root:a", CMS),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "forged-clusters",
                                "annotations": {"tmc.kcp.io/clusters": "root:b/member-1"}}}),
            201,
            "",
        ),
        // --- resource bombs (issue 13) ---
        case(
            "json-patch-copy-bomb",
            "alice doubles her ConfigMap's data forty times with JSON patch copies",
            alice.clone(),
            "PATCH",
            ws("root:a", &format!("{CMS}/cm-a")),
            Value::Array(
                (0..40)
                    .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
                    .collect(),
            ),
            413,
            "RequestEntityTooLarge",
        )
        .with_content_type(JSON_PATCH),
        case(
            "object-over-etcd-limit",
            "alice creates a 2 MiB ConfigMap (the body is under 3 MiB)",
            alice.clone(),
            "POST",
            ws("root:a", CMS),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                   "data": {"big": "x".repeat(2 << 20)}}),
            413,
            "RequestEntityTooLarge",
        ),
        case(
            "patch-grows-past-etcd-limit",
            "alice merge-patches 2 MiB into her ConfigMap",
            alice.clone(),
            "PATCH",
            ws("root:a", &format!("{CMS}/cm-a")),
            json!({"data": {"big": "x".repeat(2 << 20)}}),
            413,
            "RequestEntityTooLarge",
        ),
        case(
            "strategic-merge-quadratic",
            "alice strategic-merges 60,000 finalizers in an element order and deletes them again, in one patch",
            alice.clone(),
            "PATCH",
            ws("root:a", &format!("{CMS}/cm-a")),
            json!({"metadata": {
                "finalizers": (0..60_000).rev().map(|i| format!("x.io/{i}")).collect::<Vec<_>>(),
                "$setElementOrder/finalizers":
                    (0..60_000).rev().map(|i| format!("x.io/{i}")).collect::<Vec<_>>(),
                "$deleteFromPrimitiveList/finalizers":
                    (0..60_000).map(|i| format!("x.io/{i}")).collect::<Vec<_>>(),
            }}),
            200,
            "",
        )
        .with_content_type(STRATEGIC),
        case(
            "continue-token-future-revision",
            "alice lists root:a with a forged continue token naming a revision not reached",
            alice.clone(),
            "GET",
            get(
                "root:a",
                &format!("{CMS}?limit=1&continue={}", forged_continue(99_999_999_999, "root:a")),
            ),
            Value::Null,
            504,
            "Timeout",
        ),
        case(
            "continue-token-other-list",
            "alice pages root:a's ConfigMaps with a token that starts in root:b's",
            alice.clone(),
            "GET",
            get(
                "root:a",
                &format!("{CMS}?limit=1&continue={}", forged_continue(1, "root:b")),
            ),
            Value::Null,
            400,
            "BadRequest",
        ),
        // The scale subresource: a way to change another workspace's
        // Deployment without naming the Deployment itself.
        case(
            "scale-other-workspace-get",
            "bob reads the Scale of root:a's Deployment",
            bob.clone(),
            "GET",
            get("root:a", &format!("{DEPLOYS}/web/scale")),
            Value::Null,
            403,
            "Forbidden",
        ),
        case(
            "scale-other-workspace-patch",
            "bob scales root:a's Deployment to 100 through its scale subresource",
            bob.clone(),
            "PATCH",
            get("root:a", &format!("{DEPLOYS}/web/scale")),
            json!({"spec": {"replicas": 100}}),
            403,
            "Forbidden",
        ),
        case(
            "scale-other-workspace-put",
            "bob writes a Scale of 100 to root:a's Deployment",
            bob.clone(),
            "PUT",
            get("root:a", &format!("{DEPLOYS}/web/scale")),
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 100}}),
            403,
            "Forbidden",
        ),
        case(
            "scale-same-name-own-workspace",
            "bob scales a Deployment named as root:a's in his own workspace, where there is none",
            bob.clone(),
            "PATCH",
            get("root:b", &format!("{DEPLOYS}/web/scale")),
            json!({"spec": {"replicas": 100}}),
            404,
            "NotFound",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in &cases {
        assert!(seen.insert(c.name), "duplicate case name {}", c.name);
        // Alternate nodes: the leader-or-follower choice must not matter.
        let a = if seen.len() % 2 == 0 { &api } else { &api1 };
        failures.extend(run(a, c).await);
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The scale rows changed nothing.
    let web = api
        .admin(
            "GET",
            &ws("root:a", &format!("{DEPLOYS}/web/scale")),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(
        web["spec"]["replicas"], 2,
        "root:a's Deployment was scaled: {web}"
    );

    // forged-sync-clusters: the object was stored, the annotation that
    // would send sync to another location's cluster was not.
    let forged = api
        .admin(
            "GET",
            &ws("root:a", &format!("{CMS}/forged-clusters")),
            Value::Null,
            200,
        )
        .await;
    assert!(
        forged["metadata"]["annotations"]
            .get("tmc.kcp.io/clusters")
            .is_none(),
        "forged-sync-clusters: a client set the sync controller's annotation: {forged}"
    );
    api.admin(
        "DELETE",
        &ws("root:a", &format!("{CMS}/forged-clusters")),
        Value::Null,
        200,
    )
    .await;

    // strategic-merge-quadratic: merged, ordered and deleted again (the
    // answer came in time: Go's algorithm, which tmc used, is quadratic
    // in the list and held the request for minutes). The bombs changed
    // nothing.
    let cm_a = api
        .admin(
            "GET",
            &ws("root:a", &format!("{CMS}/cm-a")),
            Value::Null,
            200,
        )
        .await;
    assert!(
        cm_a["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "strategic-merge-quadratic left finalizers: {}",
        cm_a["metadata"]["finalizers"]
    );
    assert!(
        cm_a["data"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with('c') && k != "big"),
        "a bomb changed cm-a: {}",
        cm_a["data"]
    );

    // The exact message of one denial.
    let (_, v) = api
        .call(&dave, "GET", &ws("root:ab", CMS), Value::Null)
        .await;
    assert_eq!(
        v["message"],
        "configmaps is forbidden: User \"dave\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\" in workspace \"root:ab\""
    );
    assert_eq!(
        v["details"],
        json!({"name": "", "group": "", "kind": "configmaps"})
    );
    let (_, v) = api.call(&alice, "GET", &secret_b, Value::Null).await;
    assert_eq!(
        v["message"],
        "secrets \"s-b\" is forbidden: User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\" in workspace \"root:b\""
    );

    // Nothing was written by any row, and root:b is as bob left it.
    assert_eq!(api.admin_names(&ws("root:b", CMS)).await, ["cm-b", "cm-b2"]);
    assert_eq!(api.admin_names(&ws("root:b", SECRETS)).await, ["s-b"]);
    let b = api
        .admin(
            "GET",
            &ws("root:b", &format!("{CMS}/cm-b")),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(b["data"]["k"], "v");
    assert_eq!(
        api.admin_names(&ws("root:b", "/api/v1/namespaces")).await,
        ["default"]
    );
    assert!(api.admin_names(&ws("root:b", wss)).await.is_empty());
    assert_eq!(
        api.admin_names(&ws("root:b", &format!("{RBAC}/clusterrolebindings")))
            .await,
        ["workspace-admin"]
    );
    assert_eq!(api.admin_names(&ws("root:a", CMS)).await, ["cm-a"]);
    assert_eq!(
        api.admin_names(&rbac_a("roles")).await,
        ["cm-reader", "escalator", "frank-secrets", "rbac-writer"]
    );
    let reader = api
        .admin("GET", &rbac_a("roles/cm-reader"), Value::Null, 200)
        .await;
    assert_eq!(reader["rules"][0]["resources"], json!(["configmaps"]));
    assert_eq!(
        api.admin_names(&rbac_a("rolebindings")).await,
        [
            "carol-reader",
            "carol-writer",
            "dave-reader",
            "frank-escalator",
            "nobody-admin",
            "team-a-reader"
        ]
    );
    let cr = api
        .admin(
            "GET",
            &rbac_a("rolebindings/carol-reader"),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(cr["roleRef"]["name"], "cm-reader");
    assert_eq!(
        api.admin_names(&ws("root:a", &format!("{RBAC}/clusterrolebindings")))
            .await,
        ["workspace-admin"]
    );
    // control-binding-scope: the control binding works, in its workspace
    // only.
    let (c, _) = api
        .call(&dave, "GET", &ws("root:a", CMS), Value::Null)
        .await;
    assert_eq!(
        c, 200,
        "dave-reader grants dave ConfigMaps in root:a/default"
    );
    let (c, _) = api
        .call(&dave, "GET", &ws("root:a:b", CMS), Value::Null)
        .await;
    assert_eq!(c, 403, "but not in root:a:b");

    // ------------------------------------------------------------------
    // Rows with more steps.

    // own-list-scoped: alice's lists in root:a hold root:a objects only,
    // even with a resourceVersion taken from a root:b list.
    for q in [
        "",
        "?resourceVersion=0",
        &format!("?resourceVersion={b_rv}&resourceVersionMatch=NotOlderThan"),
    ] {
        let (c, v) = api
            .call(
                &alice,
                "GET",
                &ws("root:a", &format!("/api/v1/secrets{q}")),
                Value::Null,
            )
            .await;
        assert_eq!(c, 200, "own-list-scoped {q}: {v}");
        assert_eq!(names(&v), ["s-a"], "own-list-scoped {q}");
        for i in v["items"].as_array().unwrap() {
            assert_eq!(i["metadata"]["annotations"]["kcp.io/cluster"], "root:a");
        }
        assert!(!v.to_string().contains(B_SECRET_B64));
    }

    // foreign-role-binding: alice (admin of root:a, who may bind anything
    // there) binds dave to "secret-reader", which exists only in root:b:
    // the binding is stored but grants nothing, in either workspace.
    let (c, v) = api
        .call(
            &alice,
            "POST",
            &rbac_a("rolebindings"),
            binding(
                "RoleBinding",
                "dave-secrets",
                "ClusterRole",
                "secret-reader",
                user("dave"),
            ),
        )
        .await;
    assert_eq!(c, 201, "foreign-role-binding setup: {v}");
    let (c, _) = api
        .call(&dave, "GET", &ws("root:a", SECRETS), Value::Null)
        .await;
    assert_eq!(c, 403, "foreign-role-binding: nothing granted in root:a");
    let (c, v) = api.call(&dave, "GET", &secret_b, Value::Null).await;
    assert_eq!(
        c, 403,
        "foreign-role-binding: nothing granted in root:b: {v}"
    );

    // cross-ws-subject: alice makes bob cluster-admin of root:a; that
    // gives bob root:a and nothing of root:ab or root:a:b.
    let (c, _) = api
        .call(
            &alice,
            "POST",
            &ws("root:a", &format!("{RBAC}/clusterrolebindings")),
            binding(
                "ClusterRoleBinding",
                "bob-admin",
                "ClusterRole",
                "cluster-admin",
                user("bob"),
            ),
        )
        .await;
    assert_eq!(c, 201);
    let (c, _) = api
        .call(&bob, "GET", &ws("root:a", SECRETS), Value::Null)
        .await;
    assert_eq!(c, 200, "cross-ws-subject: bob in root:a");
    for w in ["root:ab", "root:a:b", "root"] {
        let (c, _) = api.call(&bob, "GET", &ws(w, SECRETS), Value::Null).await;
        assert_eq!(c, 403, "cross-ws-subject: bob in {w}");
    }

    // watch-isolation: alice watches Secrets in root:a while the admin
    // writes a Secret into root:b, then one into root:a; the watch sees the
    // second and never the first. Then the same for all namespaces.
    for path in [SECRETS, "/api/v1/secrets"] {
        let stop = format!("stop-{}", path.len());
        let watch = {
            let path = ws(
                "root:a",
                &format!("{path}?watch=true&resourceVersion={b_rv}"),
            );
            let alice = alice.clone();
            let api = Api::new(&s, 2);
            let stop = stop.clone();
            tokio::spawn(async move { api.watch_until(&alice, &path, &stop).await })
        };
        api.admin(
            "POST",
            &ws("root:b", SECRETS),
            secret(&format!("leak-{}", path.len()), "b-secret-value"),
            201,
        )
        .await;
        api.admin(
            "POST",
            &ws("root:ab", SECRETS),
            secret("leak-ab", "b-secret-value"),
            201,
        )
        .await;
        api.admin("POST", &ws("root:a", SECRETS), secret(&stop, "a"), 201)
            .await;
        let events = watch.await.unwrap();
        for e in &events {
            assert_eq!(
                e["object"]["metadata"]["annotations"]["kcp.io/cluster"], "root:a",
                "watch-isolation {path}: {e}"
            );
            assert!(
                !e.to_string().contains(B_SECRET_B64),
                "watch-isolation: {e}"
            );
        }
        api.admin(
            "DELETE",
            &ws("root:ab", &format!("{SECRETS}/leak-ab")),
            Value::Null,
            200,
        )
        .await;
    }

    // ------------------------------------------------------------------
    // kubectl-auth-can-i: real kubectl, per workspace.
    // ssar-json: the review as raw JSON, per workspace (kubectl below may
    // send protobuf).
    let ssar = |verb: &str, resource: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}}})
    };
    let reviews = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    for (who, cred, w, verb, res, want) in [
        ("alice", &alice, "root:a", "get", "secrets", true),
        ("alice", &alice, "root:b", "get", "secrets", false),
        ("dave", &dave, "root:b", "list", "configmaps", false),
        ("erin", &erin, "root:a", "list", "configmaps", true),
        ("erin", &erin, "root:ab", "list", "configmaps", false),
    ] {
        let (c, v) = api
            .call(cred, "POST", &ws(w, reviews), ssar(verb, res))
            .await;
        assert_eq!(c, 201, "ssar-json {who} in {w}: {v}");
        assert_eq!(
            v["status"]["allowed"], want,
            "ssar-json {who} {verb} {res} in {w}: {v}"
        );
    }
    // discovery-hides-existence: discovery and reviews answer a stranger
    // alike for a workspace that exists and one that does not.
    let (c1, d1) = api
        .call(&dave, "GET", &ws("root:b", "/apis"), Value::Null)
        .await;
    let (c2, d2) = api
        .call(&dave, "GET", &ws("root:nope", "/apis"), Value::Null)
        .await;
    assert_eq!((c1, c2), (200, 200), "discovery-hides-existence: {d1} {d2}");
    assert_eq!(d1, d2, "discovery-hides-existence");
    let (c, v) = api
        .call(
            &dave,
            "POST",
            &ws("root:nope", reviews),
            ssar("get", "secrets"),
        )
        .await;
    assert_eq!((c, &v["status"]["allowed"]), (201, &json!(false)), "{v}");
    api.admin("GET", &ws("root:nope", "/apis"), Value::Null, 404)
        .await;
    let (c, _) = api
        .call(&dave, "GET", &ws("root:a", reviews), Value::Null)
        .await;
    assert_eq!(
        c, 403,
        "ssar-json: reviews are create-only and not listable"
    );

    // The newest kubectl (v1.34) and the machine's older one.
    let oldest = "/usr/bin/kubectl".to_string();
    assert!(
        std::path::Path::new(&oldest).is_file(),
        "the machine's kubectl is missing"
    );
    for bin in [tmc::testcluster::members::kubectl_binary(), oldest] {
        let can_i = |kc: &std::path::Path, args: &[&str]| {
            let mut a = vec!["auth", "can-i"];
            a.extend_from_slice(args);
            let (ok, out, err) = kubectl_with(&bin, kc, &a, None);
            (ok, out.trim().to_string(), err)
        };
        let admin_a = s.kubeconfig(2, "root:a");
        let alice_a = s.kubeconfig_with_token(2, "root:a", ALICE);
        let alice_b = s.kubeconfig_with_token(2, "root:b", ALICE);
        let dave_a = s.kubeconfig_with_token(2, "root:a", DAVE);
        let carol_a = s.kubeconfig_with_token(3, "root:a", CAROL);
        let erin_a = s.kubeconfig_with_cert(1, "root:a", "erin", &["team-a"]);
        let erin_b = s.kubeconfig_with_cert(1, "root:b", "erin", &["team-a"]);
        for (who, kc, args, want) in [
            (
                "admin",
                &admin_a,
                vec!["delete", "secrets", "-n", "default"],
                "yes",
            ),
            ("admin", &admin_a, vec!["*", "*"], "yes"),
            (
                "alice in root:a",
                &alice_a,
                vec!["get", "secrets", "-n", "default"],
                "yes",
            ),
            (
                "alice in root:a",
                &alice_a,
                vec!["create", "workspaces.tenancy.kcp.io"],
                "yes",
            ),
            (
                "alice in root:b",
                &alice_b,
                vec!["get", "secrets", "-n", "default"],
                "no",
            ),
            (
                "dave in root:a",
                &dave_a,
                vec!["get", "secrets", "-n", "default"],
                "no",
            ),
            (
                "carol in root:a",
                &carol_a,
                vec!["list", "configmaps", "-n", "default"],
                "yes",
            ),
            (
                "carol in root:a",
                &carol_a,
                vec!["list", "configmaps", "-n", "kube-system"],
                "no",
            ),
            (
                "carol in root:a",
                &carol_a,
                vec!["get", "secrets", "-n", "default"],
                "no",
            ),
            (
                "erin in root:a",
                &erin_a,
                vec!["watch", "configmaps", "-n", "default"],
                "yes",
            ),
            (
                "erin in root:b",
                &erin_b,
                vec!["watch", "configmaps", "-n", "default"],
                "no",
            ),
        ] {
            let (ok, out, err) = can_i(kc, &args);
            assert_eq!(out, want, "{bin} auth can-i {args:?} as {who}: {err}");
            assert_eq!(
                ok,
                want == "yes",
                "exit status of {bin} can-i {args:?} as {who}"
            );
        }
        // `kubectl auth can-i --list` (SelfSubjectRulesReview) for carol.
        let (ok, out, err) = kubectl_with(
            &bin,
            &carol_a,
            &["auth", "can-i", "--list", "-n", "default"],
            None,
        );
        assert!(ok, "can-i --list: {err}");
        assert!(out.contains("configmaps"), "{out}");
        assert!(!out.contains("secrets"), "{out}");
        // kubectl itself, as carol: her reads work, Secrets are forbidden.
        let (ok, out, _) = kubectl_with(
            &bin,
            &carol_a,
            &["get", "configmaps", "-n", "default", "-o", "name"],
            None,
        );
        assert!(ok && out.contains("configmap/cm-a"), "{out}");
        let (ok, _, err) = kubectl_with(&bin, &carol_a, &["get", "secrets", "-n", "default"], None);
        assert!(
            !ok && err.contains("forbidden") && err.contains("root:a"),
            "{err}"
        );
    }
}
