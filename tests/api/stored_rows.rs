//! What is stored is compared exactly, and a row the broker cannot read is named, not fatal.

use reqwest::StatusCode;
use serde_json::{json, Value};
use token_broker::store::Store;

use crate::helpers::{spawn_app, Backend, TestApp};

crate::on_every_backend!(
    user_names_differing_in_trailing_spaces_or_case_are_different_users,
    an_unreadable_row_is_skipped_and_named,
);

async fn user_names_differing_in_trailing_spaces_or_case_are_different_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let pad = app
        .seed(json!({ "user_name": "pad@x", "refresh_token": "rt-pad", "client_id": "Client-A" }))
        .await;
    // find: only the exact name matches.
    for other in ["pad@x ", "pad@x  ", "PAD@x", "Pad@X", " pad@x"] {
        let r = app.find(&admin, &json!({ "user_name": other })).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{other:?} found pad@x's token"
        );
    }
    // save: a name with trailing spaces is another user, never an overwrite of pad@x.
    let r = app
        .save(
            &admin,
            &json!({ "user_name": "pad@x  ", "refresh_token": "rt-spaces" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let spaced: Value = r.json().await.unwrap();
    assert_ne!(spaced["id"], pad["id"]);
    assert_eq!(spaced["user_name"], "pad@x  ");
    let r = app
        .save(
            &admin,
            &json!({ "user_name": "PAD@X", "refresh_token": "rt-upper" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let kept: Value = app
        .find(&admin, &json!({ "user_name": "pad@x" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(kept["id"], pad["id"]);
    assert_eq!(kept["user_name"], "pad@x");
    assert_eq!(kept["refresh_token"], "rt-pad");
    // Other compared columns: client_id and the list filter.
    let r = app
        .find(
            &admin,
            &json!({ "refresh_token": "rt-pad", "client_id": "client-a" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let listed: Value = app
        .list(&admin, "?user_name=pad%40x%20")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(app.count().await, 3);
}

/// Damages the stored ciphertext of token `id` (as a lost key or a bad restore would).
async fn damage(app: &TestApp, id: &str) {
    let store = Store::connect(&app.db.url, &Default::default()).unwrap();
    let mut row = app
        .raw_rows()
        .await
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    let blob = row.refresh_token.as_mut().unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0xff;
    assert!(store.update_token(row, vec![]).await.unwrap());
    store.close().await;
}

async fn an_unreadable_row_is_skipped_and_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin();
    let mut ids = Vec::new();
    for n in 0..3 {
        let t = app
            .seed(json!({ "user_name": format!("user{n}@x"), "refresh_token": format!("rt-{n}") }))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    damage(&app, &ids[1]).await;
    let r = app.list(&admin, "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let listed: Vec<&str> = page["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(!listed.contains(&ids[1].as_str()));
    assert_eq!(page["unreadable"][0]["id"], ids[1].as_str(), "{page}");
    assert!(page["unreadable"][0]["error"]
        .as_str()
        .unwrap()
        .contains("decrypt"));
    assert!(!page.to_string().contains("rt-1"));
    // The others stay usable; the metric counts what was skipped.
    assert_eq!(
        app.get_token(&admin, &ids[0]).await.status(),
        StatusCode::OK
    );
    let metrics = app.metrics().await.text().await.unwrap();
    assert!(metrics.contains("token_rows_unreadable_total"), "no metric");
}

/// A key removed from `crypto.keys` before `keys rotate` moved every row off it: the ops
/// commands go on past those rows, name each, and exit 3.
#[tokio::test]
async fn the_ops_commands_name_the_rows_they_cannot_read() {
    use crate::processes::{config_with_keys, BrokerCli};
    let app = spawn_app(Backend::Sqlite).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let t = app
            .seed(json!({ "user_name": format!("lost{n}@x"), "refresh_token": format!("LOST-RT-{n}") }))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let new_key = (
        "k2".to_owned(),
        crate::helpers::expose(&token_broker::crypto::generate_key()).to_owned(),
    );
    let cli = BrokerCli::with_config(&config_with_keys(&app.settings, "k2", &[new_key]));
    // A token written under the new key reads fine.
    let broker = cli.serve(&[]).await;
    let jwt = app.admin();
    let fresh: Value = broker
        .save(
            &jwt,
            &json!({ "user_name": "fresh@x", "refresh_token": "FRESH-RT" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let page: Value = broker.list(&jwt, "").await.json().await.unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(page["unreadable"].as_array().unwrap().len(), 2, "{page}");
    drop(broker);

    let list = cli.run(&["tokens", "list"]).await;
    let list = list.assert_code(3).assert_stdout("1 token(s)");
    for id in &ids {
        assert!(list.stderr.contains(id.as_str()), "{}", list.stderr);
    }
    assert!(list.stdout.contains(fresh["id"].as_str().unwrap()));
    let rotate = cli.run(&["keys", "rotate"]).await;
    let rotate = rotate
        .assert_code(3)
        .assert_stdout("2 could not be read")
        .assert_no_secret(&["LOST-RT-", "FRESH-RT"]);
    for id in &ids {
        assert!(rotate.stderr.contains(id.as_str()), "{}", rotate.stderr);
    }
}
