//! The six TokenStore operations, as a caller sees them.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_of, spawn_app, Backend};

crate::on_every_backend!(
    save_inserts_with_a_generated_id_then_updates_the_same_row,
    save_keeps_fields_the_update_does_not_mention,
    find_matches_by_user_name_first,
    find_by_access_token_only_without_client_credentials,
    find_by_grant_token_then_refresh_token_with_the_same_client_id,
    save_matches_like_find_and_never_duplicates,
    save_with_an_id_inserts_under_that_id_and_updates_it_later,
    get_by_id_answers_404_for_unknown_and_400_for_malformed_ids,
    delete_one_then_it_is_gone,
    list_pages_with_a_cursor_and_filters,
    delete_all_needs_admin_and_confirmation,
    secrets_are_redacted_without_the_secrets_scope,
    concurrent_saves_of_one_user_leave_exactly_one_row,
    tenants_see_only_their_own_tokens,
    find_needs_something_to_match_on,
    find_by_id_alone_answers_the_token_or_404,
    expiry_time_may_be_a_string_of_digits_as_the_sdks_keep_it,
);

fn alice() -> Value {
    json!({
        "user_name": "alice@example.com",
        "client_id": "1000.CLIENT",
        "client_secret": "client-secret-alice",
        "refresh_token": "1000.refresh.alice",
        "access_token": "1000.access.alice",
        "grant_token": "1000.grant.alice",
        "expiry_time": 1795371021953i64,
        "redirect_url": "https://app.example.com/callback",
        "api_domain": "https://www.zohoapis.com",
    })
}

async fn save_inserts_with_a_generated_id_then_updates_the_same_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();

    let created = app.save(&jwt, &alice()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = created.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/tokens/{id}"));
    assert_eq!(first["provider"], "zoho-us");
    assert_eq!(first["status"], "active");
    assert_eq!(first["expiry_time"], 1795371021953i64);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    let updated = app
        .save(
            &jwt,
            &json!({ "user_name": "alice@example.com", "access_token": "1000.access.new", "expiry_time": 1795371099999i64 }),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let second: Value = updated.json().await.unwrap();
    assert_eq!(second["id"], id.as_str());
    assert_eq!(second["access_token"], "1000.access.new");
    assert_eq!(second["expiry_time"], 1795371099999i64);
    assert_eq!(app.count().await, 1);
}

async fn save_keeps_fields_the_update_does_not_mention(backend: Backend) {
    let app = spawn_app(backend).await;
    let stored = app.seed(alice()).await;
    let after = app
        .seed(json!({ "user_name": "alice@example.com", "api_domain": "https://www.zohoapis.eu" }))
        .await;
    assert_eq!(after["id"], stored["id"]);
    assert_eq!(after["api_domain"], "https://www.zohoapis.eu");
    for kept in [
        "refresh_token",
        "client_secret",
        "access_token",
        "grant_token",
        "redirect_url",
        "expiry_time",
    ] {
        assert_eq!(after[kept], stored[kept], "{kept} changed");
    }
}

async fn find_matches_by_user_name_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let a = app.seed(alice()).await;
    let b = app
        .seed(json!({ "user_name": "bob@example.com", "access_token": "1000.access.bob" }))
        .await;

    // user_name wins even when the access token named is someone else's.
    let r = app
        .find(
            &jwt,
            &json!({ "user_name": "bob@example.com", "access_token": "1000.access.alice" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], b["id"]);

    let r = app
        .find(&jwt, &json!({ "user_name": "alice@example.com" }))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["id"], a["id"]);

    let (status, body) = error_of(
        app.find(&jwt, &json!({ "user_name": "carol@example.com" }))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

async fn find_by_access_token_only_without_client_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let a = app.seed(alice()).await;

    let r = app
        .find(&jwt, &json!({ "access_token": "1000.access.alice" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], a["id"]);

    // With client credentials the access token is not a key: nothing else given, no match.
    let r = app
        .find(
            &jwt,
            &json!({ "access_token": "1000.access.alice", "client_id": "1000.CLIENT" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn find_by_grant_token_then_refresh_token_with_the_same_client_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let a = app.seed(alice()).await;

    let found = |body: Value| {
        let app = &app;
        let jwt = &jwt;
        async move { app.find(jwt, &body).await.status() }
    };
    assert_eq!(
        found(json!({ "grant_token": "1000.grant.alice", "client_id": "1000.CLIENT" })).await,
        StatusCode::OK
    );
    assert_eq!(
        found(json!({ "grant_token": "1000.grant.alice" })).await,
        StatusCode::OK
    );
    assert_eq!(
        found(json!({ "grant_token": "1000.grant.alice", "client_id": "OTHER" })).await,
        StatusCode::NOT_FOUND
    );
    // grant_token comes before refresh_token: a wrong grant token is not rescued by the refresh token.
    assert_eq!(
        found(json!({ "grant_token": "wrong", "refresh_token": "1000.refresh.alice", "client_id": "1000.CLIENT" })).await,
        StatusCode::NOT_FOUND
    );
    let r = app
        .find(&jwt, &json!({ "refresh_token": "1000.refresh.alice", "client_id": "1000.CLIENT", "client_secret": "x" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], a["id"]);
}

async fn save_matches_like_find_and_never_duplicates(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let stored = app
        .seed(json!({ "client_id": "cid", "refresh_token": "rt-1", "access_token": "at-1" }))
        .await;

    // Matched by refresh_token + client_id: the same row gets the new access token.
    let r = app
        .save(
            &jwt,
            &json!({ "client_id": "cid", "refresh_token": "rt-1", "access_token": "at-2" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], stored["id"]);

    // Matched by access token alone.
    let r = app
        .save(
            &jwt,
            &json!({ "access_token": "at-2", "api_domain": "https://x" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.count().await, 1);

    // A token find would not match is a new row.
    let r = app
        .save(
            &jwt,
            &json!({ "client_id": "cid", "refresh_token": "rt-other" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.count().await, 2);
}

async fn save_with_an_id_inserts_under_that_id_and_updates_it_later(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let r = app
        .save(&jwt, &json!({ "id": "zoho-1700000000000", "user_name": "dan@example.com", "refresh_token": "rt" }))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .save(
            &jwt,
            &json!({ "id": "zoho-1700000000000", "user_name": "daniel@example.com" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], "zoho-1700000000000");
    assert_eq!(body["user_name"], "daniel@example.com");
    assert_eq!(app.count().await, 1);
}

async fn get_by_id_answers_404_for_unknown_and_400_for_malformed_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let a = app.seed(alice()).await;
    let r = app.get_token(&jwt, a["id"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), a);

    let (status, body) = error_of(app.get_token(&jwt, "no-such-id").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, body) = error_of(app.get_token(&jwt, "bad%20id").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_id");
}

async fn delete_one_then_it_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let a = app.seed(alice()).await;
    let b = app
        .seed(json!({ "user_name": "bob", "refresh_token": "rt-bob" }))
        .await;
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        app.delete_token(&jwt, id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_token(&jwt, id).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = error_of(app.delete_token(&jwt, id).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_token(&jwt, b["id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

async fn list_pages_with_a_cursor_and_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    for i in 0..5 {
        let provider = if i % 2 == 0 { "zoho-us" } else { "zoho-eu" };
        app.seed(json!({ "user_name": format!("user{i}@example.com"), "provider": provider, "refresh_token": format!("rt-{i}") }))
            .await;
    }

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let r = app.list(&jwt, &query).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        pages += 1;
        for t in page["tokens"].as_array().unwrap() {
            seen.push(t["user_name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(
        seen,
        (0..5)
            .map(|i| format!("user{i}@example.com"))
            .collect::<Vec<_>>()
    );

    let page: Value = app
        .list(&jwt, "?provider=zoho-eu")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 2);
    let page: Value = app
        .list(&jwt, "?user_name=user3@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tokens"][0]["user_name"], "user3@example.com");
    let page: Value = app
        .list(&jwt, "?status=needs_reauth")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 0);

    let (status, body) = error_of(app.list(&jwt, "?limit=0").await).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("limit"))
    );
    let (status, body) = error_of(app.list(&jwt, "?cursor=garbage!").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    let (status, _) = error_of(app.list(&jwt, "?limit=abc").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn delete_all_needs_admin_and_confirmation(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(alice()).await;
    app.seed(json!({ "user_name": "bob", "refresh_token": "rt-bob" }))
        .await;

    let writer = app.jwt("tokens:read tokens:write");
    let (status, _) = error_of(app.delete_all(&writer, "?confirm=all").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = error_of(app.delete_all(&app.admin(), "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("confirmation_required"))
    );
    assert_eq!(app.count().await, 2, "refused deletes delete nothing");

    let r = app.delete_all(&app.admin(), "?confirm=all").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "deleted": 2 }));
    assert_eq!(app.count().await, 0);
}

async fn secrets_are_redacted_without_the_secrets_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.seed(alice()).await;
    let reader = app.jwt("tokens:read");
    let r: Value = app
        .get_token(&reader, a["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["client_secret"], Value::Null);
    assert_eq!(r["refresh_token"], Value::Null);
    assert_eq!(r["grant_token"], Value::Null);
    // The access token too: reading one needs tokens:access.
    assert_eq!(r["access_token"], Value::Null);
    assert_eq!(r["client_id"], "1000.CLIENT");
    let with_access = app.jwt("tokens:read tokens:access");
    let r: Value = app
        .get_token(&with_access, a["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["access_token"], "1000.access.alice");
    assert_eq!(r["refresh_token"], Value::Null);

    let list: Value = app.list(&reader, "").await.json().await.unwrap();
    assert_eq!(list["tokens"][0]["refresh_token"], Value::Null);
    assert_eq!(list["tokens"][0]["access_token"], Value::Null);
    let found: Value = app
        .find(&reader, &json!({ "user_name": "alice@example.com" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["access_token"], Value::Null);

    let with_secrets = app.jwt("tokens:read tokens:secrets");
    let r: Value = app
        .get_token(&with_secrets, a["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["refresh_token"], "1000.refresh.alice");
    assert_eq!(r["client_secret"], "client-secret-alice");

    // Writing without tokens:secrets also answers redacted.
    let writer = app.jwt("tokens:write");
    let r: Value = app
        .save(
            &writer,
            &json!({ "user_name": "alice@example.com", "api_domain": "https://y" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["refresh_token"], Value::Null);
}

async fn concurrent_saves_of_one_user_leave_exactly_one_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let jwt = app.admin();
    let saves = (0..40).map(|i| {
        let app = &app;
        let jwt = &jwt;
        async move {
            // Half name the provider, half leave it to the default: both must land on one row.
            let body = if i % 2 == 0 {
                json!({ "user_name": "race@example.com", "access_token": format!("at-{i}"), "refresh_token": "rt" })
            } else {
                json!({ "user_name": "race@example.com", "provider": "zoho-us", "access_token": format!("at-{i}") })
            };
            app.save(jwt, &body).await.status()
        }
    });
    let statuses = join_all(saves).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1
    );
    assert_eq!(app.count().await, 1);
}

async fn tenants_see_only_their_own_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = app.jwt_for(
        "acme-svc",
        "tokens:read tokens:write tokens:admin",
        Some("acme"),
    );
    let globex = app.jwt_for(
        "globex-svc",
        "tokens:read tokens:write tokens:admin",
        Some("globex"),
    );

    let r = app.save(&acme, &alice()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["tenant"], "acme");
    let id = token["id"].as_str().unwrap();

    // The same user in another tenant is another token.
    assert_eq!(
        app.save(&globex, &alice()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count().await, 2);

    // Another tenant's token is answered exactly like a missing one.
    let (status, body) = error_of(app.get_token(&globex, id).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(
        app.delete_token(&globex, id).await.status(),
        StatusCode::NOT_FOUND
    );
    let page: Value = app.list(&globex, "").await.json().await.unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 1);
    assert_ne!(page["tokens"][0]["id"], id);

    // A tenant cannot write into another tenant.
    let (status, _) = error_of(
        app.save(
            &globex,
            &json!({ "tenant": "acme", "user_name": "x", "refresh_token": "y" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // delete_tokens only reaches the caller's tenant.
    let r: Value = app
        .delete_all(&globex, "?confirm=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["deleted"], 1);
    assert_eq!(app.get_token(&acme, id).await.status(), StatusCode::OK);

    // A caller with no tenant claim sees every tenant, and can filter by one.
    let page: Value = app
        .list(&app.admin(), "?tenant=acme")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tokens"].as_array().unwrap().len(), 1);
}

async fn find_needs_something_to_match_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) =
        error_of(app.find(&app.admin(), &json!({ "client_id": "cid" })).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "invalid_field");
}

async fn find_by_id_alone_answers_the_token_or_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let stored = app.seed(alice()).await;
    let id = stored["id"].as_str().unwrap();

    let r = app.find(&app.admin(), &json!({ "id": id })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["id"], id);
    assert_eq!(found["user_name"], "alice@example.com");

    let (status, body) =
        error_of(app.find(&app.admin(), &json!({ "id": "no-such-id" })).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // An unknown id with something else to match on: the other rules still apply.
    let r = app
        .find(
            &app.admin(),
            &json!({ "id": "no-such-id", "user_name": "alice@example.com" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Another tenant's id is answered like a missing one.
    let other = app.jwt_for("svc", "tokens:read", Some("other"));
    assert_eq!(
        app.find(&other, &json!({ "id": id })).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn expiry_time_may_be_a_string_of_digits_as_the_sdks_keep_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = alice();
    body["expiry_time"] = json!("1795371021953");
    let r = app.save(&app.admin(), &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(
        stored["expiry_time"],
        json!(1795371021953i64),
        "numbers in answers"
    );

    let r = app
        .find(
            &app.admin(),
            &json!({ "user_name": "alice@example.com", "expiry_time": "1795371021953" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    for bad in [
        json!("17x"),
        json!("-5"),
        json!(""),
        json!("1.5"),
        json!(true),
        json!(-1),
    ] {
        let mut body = alice();
        body["expiry_time"] = bad.clone();
        let (status, err) = error_of(app.save(&app.admin(), &body).await).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status}"
        );
        assert!(
            err["message"].as_str().unwrap().contains("expiry_time"),
            "{bad}: {err}"
        );
    }
    let stored_again: Value = app
        .get_token(&app.admin(), stored["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored_again["expiry_time"],
        json!(1795371021953i64),
        "bad saves changed nothing"
    );
}
