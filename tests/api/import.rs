//! `token-broker import zoho-csv|zoho-db`: the real CLI, run against the database of an in-process
//! broker, checked through that broker's HTTP API. The broker's database is each backend in turn;
//! the Zoho DBStore source table always lives in MariaDB (a database of its own per test), so the
//! `zoho-db` tests run only when the `mysql` backend is enabled.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::fake_provider::{grant, with_fake, FakeProvider};
use crate::helpers::{
    mysql_admin_url, spawn_app, spawn_app_with, uuid_simple, Backend, BackendExt, TestApp,
};
use crate::processes::{BrokerCli, Run};

crate::on_every_backend!(
    csv_import_creates_then_updates_and_reports_bad_lines,
    csv_import_lands_in_the_given_provider_and_tenant,
    db_import_reads_the_sdk_dbstore_table_idempotently,
    db_import_reads_an_older_sdk_table_and_guards_ids,
    a_second_import_never_rolls_back_a_token_the_broker_refreshed,
);

impl Run {
    fn rejections(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("rejected "))
            .collect()
    }
}

async fn find(app: &TestApp, body: Value) -> Value {
    let r = app.find(&app.admin(), &body).await;
    assert_eq!(r.status(), StatusCode::OK, "find {body}");
    r.json().await.unwrap()
}

async fn list(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.list(&app.admin(), query).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["tokens"].as_array().unwrap().clone()
}

/// Every credential in [`SDK_FILE`]: none may ever show up in the CLI's output.
const CSV_SECRETS: &[&str] = &[
    "sec,ret-\"A\"",
    "ret-\"A",
    "1000.refresh.alice-SECRET",
    "1000.access.alice-SECRET",
    "line-SECRET-b",
    "1000.refresh.bob-SECRET",
    "1000.grant.erin-SECRET",
    "1000.refresh.carol-SECRET",
    "x-SECRET-dave",
    "SECRET",
];

/// A FileStore file as the current SDKs write it: CRLF, quoted fields with commas, quotes and
/// line breaks; three good records and two bad ones (lines 5 and 6–7).
const SDK_FILE: &str = "id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\r\n\
1,alice@example.com,1000.CLIENTA,\"sec,ret-\"\"A\"\"\",1000.refresh.alice-SECRET,1000.access.alice-SECRET,,1795371021953,https://app.example.com/cb,https://www.zohoapis.com\r\n\
2,\"Doe, \"\"Bob\"\"\",1000.CLIENTB,\"multi\r\nline-SECRET-b\",1000.refresh.bob-SECRET,,,,\"https://app.example.com/cb?a=1,b=2\",\r\n\
3,carol@example.com,1000.CLIENTC,,1000.refresh.carol-SECRET,,,,\r\n\
4,dave@example.com,1000.CLIENTD,\"x-SECRET-dave\r\n\",,,,,,\r\n\
5,erin@example.com,1000.CLIENTE,,,,1000.grant.erin-SECRET,,,https://www.zohoapis.eu\r\n";

async fn csv_import_creates_then_updates_and_reports_bad_lines(backend: Backend) {
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    let file = cli.file("tokens.csv", SDK_FILE.as_bytes());

    let run = cli.run(&["import", "zoho-csv", &file]).await;
    run.assert_code(3)
        .assert_stdout("3 created, 0 updated, 2 rejected")
        .assert_no_secret(CSV_SECRETS);
    assert_eq!(
        run.rejections(),
        [
            "rejected line 5: 9 field(s) where the header has 10",
            "rejected line 6: no refresh_token, access_token or grant_token",
        ]
    );
    assert_eq!(app.count().await, 3);

    let alice = find(&app, json!({ "user_name": "alice@example.com" })).await;
    assert_eq!(alice["id"], "1", "the SDK's id is kept");
    assert_eq!(alice["client_id"], "1000.CLIENTA");
    assert_eq!(alice["client_secret"], "sec,ret-\"A\"");
    assert_eq!(alice["refresh_token"], "1000.refresh.alice-SECRET");
    assert_eq!(alice["access_token"], "1000.access.alice-SECRET");
    assert_eq!(alice["grant_token"], Value::Null);
    assert_eq!(alice["expiry_time"], 1_795_371_021_953_i64);
    assert_eq!(alice["redirect_url"], "https://app.example.com/cb");
    assert_eq!(alice["api_domain"], "https://www.zohoapis.com");
    assert_eq!(alice["provider"], "zoho-us");
    assert_eq!(alice["tenant"], Value::Null);
    assert_eq!(alice["status"], "active");

    let bob = find(&app, json!({ "user_name": "Doe, \"Bob\"" })).await;
    assert_eq!(bob["id"], "2");
    assert_eq!(bob["client_secret"], "multi\r\nline-SECRET-b");
    assert_eq!(bob["refresh_token"], "1000.refresh.bob-SECRET");
    assert_eq!(bob["access_token"], Value::Null);
    assert_eq!(
        bob["expiry_time"],
        Value::Null,
        "an empty expiry_time is absent"
    );
    assert_eq!(bob["redirect_url"], "https://app.example.com/cb?a=1,b=2");
    assert_eq!(bob["api_domain"], Value::Null);

    let r = app.get_token(&app.admin(), "5").await;
    assert_eq!(r.status(), StatusCode::OK);
    let erin: Value = r.json().await.unwrap();
    assert_eq!(erin["user_name"], "erin@example.com");
    assert_eq!(erin["grant_token"], "1000.grant.erin-SECRET");
    assert_eq!(erin["api_domain"], "https://www.zohoapis.eu");
    // Found by its grant token too, like the SDK's find_token would.
    let by_grant = find(
        &app,
        json!({ "grant_token": "1000.grant.erin-SECRET", "client_id": "1000.CLIENTE" }),
    )
    .await;
    assert_eq!(by_grant["id"], "5");

    // Again: nothing new, the same three updated, the same lines refused.
    let again = cli.run(&["import", "zoho-csv", &file]).await;
    again
        .assert_code(3)
        .assert_stdout("0 created, 3 updated, 2 rejected")
        .assert_no_secret(CSV_SECRETS);
    assert_eq!(again.rejections(), run.rejections());
    assert_eq!(app.count().await, 3);
    let ids: Vec<String> = list(&app, "")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2", "5"]);
    let alice_again = find(&app, json!({ "user_name": "alice@example.com" })).await;
    assert_eq!(alice_again["created_at"], alice["created_at"]);
    assert_eq!(alice_again["refresh_token"], "1000.refresh.alice-SECRET");

    app.stop().await;
}

async fn csv_import_lands_in_the_given_provider_and_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    // The oldest SDK layout: no id, no client_secret, user_mail; LF line ends.
    let file = cli.file(
        "old.csv",
        b"user_mail,client_id,refresh_token,access_token,grant_token,expiry_time\n\
          ann@example.com,1000.X,1000.r.ann-SECRET,1000.a.ann-SECRET,,1795371021953\n\
          ben@example.com,1000.X,,,1000.g.ben-SECRET,\n",
    );
    let secrets = [
        "1000.r.ann-SECRET",
        "1000.a.ann-SECRET",
        "1000.g.ben-SECRET",
    ];

    let args = [
        "import",
        "zoho-csv",
        file.as_str(),
        "--provider",
        "zoho-eu",
        "--tenant",
        "acme",
    ];
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("2 created, 0 updated, 0 rejected")
        .assert_no_secret(&secrets);

    let acme = list(&app, "?tenant=acme").await;
    assert_eq!(acme.len(), 2);
    for t in &acme {
        assert_eq!(t["provider"], "zoho-eu");
        assert_eq!(t["tenant"], "acme");
        assert_eq!(t["status"], "active");
    }
    let ann = find(
        &app,
        json!({ "user_name": "ann@example.com", "tenant": "acme" }),
    )
    .await;
    assert_eq!(ann["refresh_token"], "1000.r.ann-SECRET");
    assert_eq!(ann["expiry_time"], 1_795_371_021_953_i64);
    // Outside the tenant there is no such token; a caller of the tenant sees it.
    let r = app
        .find(&app.admin(), &json!({ "user_name": "ann@example.com" }))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let tenant_jwt = app.jwt_for("acme-app", "tokens:read", Some("acme"));
    let r = app
        .find(&tenant_jwt, &json!({ "user_name": "ben@example.com" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // Again into acme: updated. Into no tenant with the default provider: new tokens there.
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("0 created, 2 updated, 0 rejected");
    cli.run(&["import", "zoho-csv", &file])
        .await
        .assert_code(0)
        .assert_stdout("2 created, 0 updated, 0 rejected");
    assert_eq!(app.count().await, 4);
    let ann_us = find(&app, json!({ "user_name": "ann@example.com" })).await;
    assert_eq!(ann_us["provider"], "zoho-us");
    assert_eq!(ann_us["tenant"], Value::Null);
    assert_ne!(ann_us["id"], ann["id"]);

    // Options are checked before anything is read.
    cli.run(&["import", "zoho-csv", &file, "--tenant", "not a tenant"])
        .await
        .assert_code(1)
        .assert_stderr("tenant");
    assert_eq!(app.count().await, 4);

    app.stop().await;
}

/// A database of its own on the MariaDB test server, playing the Zoho DBStore.
struct SourceDb {
    url: String,
    name: String,
}

impl SourceDb {
    async fn new() -> Self {
        let admin = mysql_admin_url();
        let mut conn = sqlx::MySqlConnection::connect(&admin)
            .await
            .expect("MariaDB on 127.0.0.1:3306 (start it with .ci/run)");
        let name = format!("tb_test_{}", uuid_simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn execute(&self, statements: &[&str]) {
        let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        for sql in statements {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }

    async fn table_exists(&self, table: &str) -> bool {
        let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        n == 1
    }

    async fn drop(self) {
        let mut conn = sqlx::MySqlConnection::connect(&mysql_admin_url())
            .await
            .unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE {}", self.name))
            .execute(&mut conn)
            .await;
    }
}

/// The table exactly as the current SDKs' documentation creates it for DBStore.
const DBSTORE_TABLE: &str = "CREATE TABLE oauthtoken (
  id varchar(10) NOT NULL,
  user_name varchar(255),
  client_id varchar(255),
  client_secret varchar(255),
  refresh_token varchar(255),
  access_token varchar(255),
  grant_token varchar(255),
  expiry_time varchar(20),
  redirect_url varchar(255),
  api_domain varchar(255),
  primary key (id)
)";

const DB_SECRETS: &[&str] = &[
    "cs-SECRET-alice",
    "1000.r.alice-SECRET",
    "1000.a.alice-SECRET",
    "1000.r.bob-SECRET",
    "1000.r.carol-SECRET",
    "1000.r.dave-SECRET",
    "1000.a.frank-SECRET",
    "PASSWORD-SECRET",
    "SECRET",
];

async fn db_import_reads_the_sdk_dbstore_table_idempotently(backend: Backend) {
    if !Backend::MySql.enabled() {
        return;
    }
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    let source = SourceDb::new().await;
    source
        .execute(&[
            DBSTORE_TABLE,
            "INSERT INTO oauthtoken VALUES
              ('1', 'alice@example.com', '1000.CID', 'cs-SECRET-alice', '1000.r.alice-SECRET', '1000.a.alice-SECRET', NULL, '1795371021953', 'https://app.example.com/cb', 'https://www.zohoapis.com'),
              ('2', 'bob@example.com', '1000.CID', NULL, '1000.r.bob-SECRET', NULL, NULL, '', '', NULL),
              ('3', 'carol@example.com', '1000.CID', NULL, '1000.r.carol-SECRET', NULL, NULL, 'tomorrow', NULL, NULL),
              ('4', 'erin@example.com', '1000.CID', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              ('bad id', 'dave@example.com', '1000.CID', NULL, '1000.r.dave-SECRET', NULL, NULL, NULL, NULL, NULL),
              ('5', 'frank@example.com', 'null', NULL, 'null', '1000.a.frank-SECRET', 'null', 'null', 'null', 'null')",
        ])
        .await;

    let run = cli.run(&["import", "zoho-db", &source.url]).await;
    run.assert_code(3)
        .assert_stdout("imported table `oauthtoken`: 3 created, 0 updated, 3 rejected")
        .assert_no_secret(DB_SECRETS);
    assert_eq!(
        run.rejections(),
        [
            "rejected row id 3: expiry_time: not a whole number of milliseconds since the Unix epoch",
            "rejected row id 4: no refresh_token, access_token or grant_token",
            "rejected row 6: id: may only contain letters, digits, '-', '_' and '.'",
        ]
    );
    assert_eq!(app.count().await, 3);

    let alice = find(&app, json!({ "user_name": "alice@example.com" })).await;
    assert_eq!(alice["id"], "1");
    assert_eq!(alice["client_secret"], "cs-SECRET-alice");
    assert_eq!(alice["refresh_token"], "1000.r.alice-SECRET");
    assert_eq!(alice["access_token"], "1000.a.alice-SECRET");
    assert_eq!(alice["expiry_time"], 1_795_371_021_953_i64);
    assert_eq!(alice["redirect_url"], "https://app.example.com/cb");
    assert_eq!(alice["api_domain"], "https://www.zohoapis.com");
    assert_eq!(alice["provider"], "zoho-us");
    let bob = find(&app, json!({ "user_name": "bob@example.com" })).await;
    assert_eq!(bob["expiry_time"], Value::Null);
    assert_eq!(bob["redirect_url"], Value::Null);
    let r = app.get_token(&app.admin(), "5").await;
    assert_eq!(r.status(), StatusCode::OK);
    let frank: Value = r.json().await.unwrap();
    assert_eq!(frank["access_token"], "1000.a.frank-SECRET");
    for field in ["client_id", "refresh_token", "grant_token", "expiry_time"] {
        assert_eq!(
            frank[field],
            Value::Null,
            "the text `null` is absent: {field}"
        );
    }

    let again = cli
        .run(&["import", "zoho-db", &source.url, "--table", "oauthtoken"])
        .await;
    again
        .assert_code(3)
        .assert_stdout("0 created, 3 updated, 3 rejected")
        .assert_no_secret(DB_SECRETS);
    assert_eq!(again.rejections(), run.rejections());
    assert_eq!(app.count().await, 3);

    // A table name is an identifier, never SQL; an unknown table stops with an error.
    cli.run(&[
        "import",
        "zoho-db",
        &source.url,
        "--table",
        "oauthtoken; DROP TABLE oauthtoken",
    ])
    .await
    .assert_code(1)
    .assert_stderr("--table");
    assert!(source.table_exists("oauthtoken").await);
    cli.run(&["import", "zoho-db", &source.url, "--table", "tokens"])
        .await
        .assert_code(1)
        .assert_stderr("table `tokens` not found");

    // An unreachable source stops with an error that does not print the URL's password.
    let (_, host_and_db) = source.url.split_once('@').unwrap();
    let (_, db) = host_and_db.split_once('/').unwrap();
    let unreachable = format!("mariadb://root:PASSWORD-SECRET@127.0.0.1:1/{db}");
    cli.run(&["import", "zoho-db", &unreachable])
        .await
        .assert_code(1)
        .assert_stderr("cannot connect to the source database")
        .assert_no_secret(DB_SECRETS);
    assert_eq!(app.count().await, 3);

    app.stop().await;
    source.drop().await;
}

async fn db_import_reads_an_older_sdk_table_and_guards_ids(backend: Backend) {
    if !Backend::MySql.enabled() {
        return;
    }
    let app = spawn_app(backend).await;
    let cli = BrokerCli::for_app(&app);
    let source = SourceDb::new().await;
    // Older SDKs: an integer id, user_mail, no api_domain; and a binary collation.
    source
        .execute(&[
            "CREATE TABLE zoho_tokens (
              id int NOT NULL AUTO_INCREMENT,
              user_mail varchar(255) NOT NULL,
              client_id varchar(255),
              client_secret varchar(255),
              refresh_token varchar(255),
              access_token varchar(255),
              grant_token varchar(255),
              expiry_time varchar(20),
              redirect_url varchar(255),
              primary key (id)
            ) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            "INSERT INTO zoho_tokens (user_mail, client_id, refresh_token, expiry_time) VALUES
              ('old@example.com', '1000.OLD', '1000.r.old-SECRET', '1600000000000'),
              ('ünïcode@example.com', '1000.OLD', '1000.r.uni-SECRET', NULL)",
        ])
        .await;
    // Tokens already in the broker: id 1 of another user; id 2 in another tenant.
    app.seed(json!({ "id": "1", "user_name": "someone@example.com", "refresh_token": "x" }))
        .await;
    app.seed(json!({ "id": "2", "tenant": "other", "user_name": "ünïcode@example.com", "refresh_token": "y" }))
        .await;

    let args = [
        "import",
        "zoho-db",
        source.url.as_str(),
        "--table",
        "zoho_tokens",
    ];
    let run = cli.run(&args).await;
    run.assert_code(3)
        .assert_stdout("0 created, 0 updated, 2 rejected")
        .assert_no_secret(&["1000.r.old-SECRET", "1000.r.uni-SECRET"]);
    assert_eq!(
        run.rejections(),
        [
            "rejected row id 1: id: already used by a token of another user_name",
            "rejected row id 2: id: already used by a token of another tenant (ids are unique across tenants)",
        ]
    );
    let someone = find(&app, json!({ "user_name": "someone@example.com" })).await;
    assert_eq!(someone["refresh_token"], "x", "left alone");

    // --new-ids: the table's ids are ignored, so it imports beside those tokens, matching by
    // user_name the second time.
    let new_ids = [&args[..], &["--new-ids"]].concat();
    cli.run(&new_ids)
        .await
        .assert_code(0)
        .assert_stdout("2 created, 0 updated, 0 rejected");
    cli.run(&new_ids)
        .await
        .assert_code(0)
        .assert_stdout("0 created, 2 updated, 0 rejected");
    let old = find(&app, json!({ "user_name": "old@example.com" })).await;
    assert_ne!(old["id"], "1");
    assert_eq!(old["refresh_token"], "1000.r.old-SECRET");
    let someone = find(&app, json!({ "user_name": "someone@example.com" })).await;
    assert_eq!(someone["refresh_token"], "x", "still left alone");

    // Without the clashing tokens the same table imports, twice.
    assert_eq!(
        app.delete_all(&app.admin(), "?confirm=all").await.status(),
        StatusCode::OK
    );
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("2 created, 0 updated, 0 rejected");
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("0 created, 2 updated, 0 rejected");
    let old = find(&app, json!({ "user_name": "old@example.com" })).await;
    assert_eq!(old["id"], "1");
    assert_eq!(old["refresh_token"], "1000.r.old-SECRET");
    assert_eq!(old["expiry_time"], 1_600_000_000_000_i64);
    assert_eq!(old["api_domain"], Value::Null);
    let uni = find(&app, json!({ "user_name": "ünïcode@example.com" })).await;
    assert_eq!(uni["id"], "2");
    assert_eq!(app.count().await, 2);

    app.stop().await;
    source.drop().await;
}

async fn a_second_import_never_rolls_back_a_token_the_broker_refreshed(backend: Backend) {
    let fake = FakeProvider::start().await;
    fake.on_refresh(200, grant("1000.access.fresh-SECRET", None, 3600), 0)
        .await;
    let app = spawn_app_with(backend, |s| with_fake(s, &fake, "client_secret_basic")).await;
    let cli = BrokerCli::for_app(&app);
    // An SDK file whose access token has expired (the SDK would refresh it next).
    let file = cli.file(
        "tokens.csv",
        b"id,user_name,client_id,client_secret,refresh_token,access_token,grant_token,expiry_time,redirect_uri,api_domain\n\
          ,ann@example.com,1000.X,sec-SECRET,1000.r.ann-SECRET,1000.a.old-SECRET,,1600000000000,,\n",
    );
    let args = ["import", "zoho-csv", file.as_str(), "--provider", "zoho-eu"];
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("1 created");
    let id = find(&app, json!({ "user_name": "ann@example.com" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The broker refreshes it ...
    let r = app.access_token(&app.jwt("tokens:access"), &id, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(fresh["access_token"], "1000.access.fresh-SECRET");

    // ... and importing the same (now older) file again keeps the newer token.
    cli.run(&args)
        .await
        .assert_code(0)
        .assert_stdout("0 created, 1 updated, 0 rejected")
        .assert_no_secret(&["1000.r.ann-SECRET", "1000.a.old-SECRET", "sec-SECRET"]);
    let stored = find(&app, json!({ "user_name": "ann@example.com" })).await;
    assert_eq!(stored["access_token"], "1000.access.fresh-SECRET");
    assert_eq!(stored["expiry_time"], fresh["expiry_time"]);
    assert_eq!(stored["refresh_token"], "1000.r.ann-SECRET");
    let r = app.access_token(&app.jwt("tokens:access"), &id, "").await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["access_token"],
        "1000.access.fresh-SECRET"
    );
    assert_eq!(
        fake.calls("refresh_token").await,
        1,
        "no refresh needed after the import"
    );

    // A file that is newer than the stored token still updates it.
    let newer = cli.file(
        "newer.csv",
        format!(
            "user_name,client_id,client_secret,refresh_token,access_token,expiry_time\n\
             ann@example.com,1000.X,sec-SECRET,1000.r.ann-SECRET,1000.a.newer-SECRET,{}\n",
            fresh["expiry_time"].as_i64().unwrap() + 60_000
        )
        .as_bytes(),
    );
    cli.run(&[
        "import",
        "zoho-csv",
        newer.as_str(),
        "--provider",
        "zoho-eu",
    ])
    .await
    .assert_code(0);
    let stored = find(&app, json!({ "user_name": "ann@example.com" })).await;
    assert_eq!(stored["access_token"], "1000.a.newer-SECRET");
}
