//! The route table: every documented operation is registered here together with what the audit
//! trail records of it, so a new route cannot go unaudited by omission; and the OpenAPI document
//! those routes make, with the answers every secured operation shares (401, 403) added once.

use std::collections::HashMap;

use axum::http::Method;
use axum::Router;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::state::AppState;
use super::{audit, connect, health, metrics, oauth, proxy, tokens, webhooks};
use crate::audit::Action;

/// The documented routes: each is registered from its `#[utoipa::path]`, so the OpenAPI document
/// and the router cannot disagree, and each says what the audit trail records of its calls.
pub fn api() -> (Router<AppState>, Document, RouteTable) {
    Registry::new()
        .audited(Action::ListTokens, routes!(tokens::list))
        .audited(Action::SaveToken, routes!(tokens::save))
        .audited(Action::DeleteTokens, routes!(tokens::delete_all))
        .audited(Action::FindToken, routes!(tokens::find))
        .audited(Action::GetToken, routes!(tokens::get))
        .audited(Action::DeleteToken, routes!(tokens::delete))
        .audited(Action::GetAccessToken, routes!(oauth::access_token))
        .audited(Action::Refresh, routes!(oauth::refresh))
        .audited(Action::Revoke, routes!(oauth::revoke))
        .audited(Action::Exchange, routes!(oauth::exchange))
        .audited(Action::Authorize, routes!(connect::authorize))
        .audited(Action::CreateConnectSession, routes!(connect::create))
        .audited(Action::GetConnectSession, routes!(connect::get))
        .audited(Action::OpenConnectLink, routes!(connect::open))
        .audited(Action::LoginCallback, routes!(connect::callback))
        .audited(Action::Proxy, routes!(proxy::forward))
        .audited(Action::ListWebhookEvents, routes!(webhooks::list))
        .audited(Action::RetryWebhookEvent, routes!(webhooks::retry))
        // Reading the trail would fill it with its own reads.
        .unaudited(routes!(audit::list))
        // Operations endpoints: polled by machines, no caller, no token.
        .unaudited(routes!(health::healthz))
        .unaudited(routes!(health::readyz))
        .unaudited(routes!(metrics::render))
        .finish()
}

/// What the audit trail records of a route, declared where the route is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// Every call is an event with this action.
    Record(Action),
    /// No event (see the reason at the registration).
    Skip,
}

/// The audit declaration of every registered operation, by route (as axum matches it: the
/// OpenAPI path) and method.
#[derive(Debug, Default)]
pub struct RouteTable(HashMap<String, Vec<(Method, Audit)>>);

impl RouteTable {
    /// `None` for a route not registered through [`api`] (the document and its page).
    pub fn audit(&self, method: &Method, route: &str) -> Option<Audit> {
        self.0
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, audit)| *audit)
    }
}

/// Builds the router, its document and the [`RouteTable`] side by side; no other way to add a
/// documented route exists.
struct Registry {
    router: OpenApiRouter<AppState>,
    table: RouteTable,
}

impl Registry {
    fn new() -> Self {
        Self {
            router: OpenApiRouter::with_openapi(ApiDoc::openapi()),
            table: RouteTable::default(),
        }
    }

    fn audited(self, action: Action, route: UtoipaMethodRouter<AppState>) -> Self {
        self.add(Audit::Record(action), route)
    }

    fn unaudited(self, route: UtoipaMethodRouter<AppState>) -> Self {
        self.add(Audit::Skip, route)
    }

    /// Registers one handler (one per `routes!`: each has its own declaration; only a handler
    /// of several methods on one path, the proxy, makes more than one operation).
    fn add(mut self, audit: Audit, route: UtoipaMethodRouter<AppState>) -> Self {
        let operations: Vec<(&String, Method)> = route
            .1
            .paths
            .iter()
            .flat_map(|(path, item)| operations(item).map(move |(m, _)| (path, m)))
            .collect();
        assert_eq!(
            route.1.paths.len(),
            1,
            "register one handler at a time, each with its own audit declaration: {operations:?}"
        );
        for (path, method) in operations {
            // As axum matches it (`{*rest}`) and as the document names it (`{rest}`).
            for key in [path.clone(), documented(path)] {
                let methods = self.table.0.entry(key).or_default();
                if !methods.iter().any(|(m, _)| *m == method) {
                    methods.push((method.clone(), audit));
                }
            }
        }
        self.router = self.router.routes(route);
        self
    }

    fn finish(self) -> (Router<AppState>, Document, RouteTable) {
        let (router, mut doc) = self.router.split_for_parts();
        doc.paths.paths = std::mem::take(&mut doc.paths.paths)
            .into_iter()
            .map(|(path, item)| (documented(&path), item))
            .collect();
        ContractAnswers.modify(&mut doc);
        (router, doc, self.table)
    }
}

/// A route as OpenAPI writes it: axum's catch-all `{*rest}` is the parameter `{rest}`.
fn documented(path: &str) -> String {
    path.replace("{*", "{")
}

/// The operations of a path item, with their methods.
fn operations(item: &PathItem) -> impl Iterator<Item = (Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "token-broker",
        description = "Holds OAuth credentials and hands out valid access tokens. The six Zoho SDK TokenStore operations, plus refresh, exchange, login and revoke."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tokens", description = "The TokenStore operations"),
        (name = "access", description = "Valid access tokens, refresh, revoke"),
        (name = "oauth", description = "Code exchange and the browser login"),
        (name = "operations", description = "Health, metrics, audit"),
        (name = "connect", description = "Connect sessions: the login a person finishes in their browser"),
        (name = "proxy", description = "Calls to a provider's API made with a stored token: the caller never holds it"),
    )
)]
struct ApiDoc;

/// The caller's JWT, as the `bearer` security scheme the operations name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers the shared extractors give, added to every operation they apply to, so no
/// handler lists them itself and none is left out:
/// - a security requirement: 401 (the caller extractor) and 403 (`Caller::require`);
/// - a request body: 400 (not JSON), 413 (too large), 415 (not `application/json`), 422 (a field
///   refused);
/// - a path parameter: 400 (`invalid_id`);
/// - query parameters: 400 (`invalid_query`: unknown or unreadable) and 422 (a value refused).
struct ContractAnswers;

impl Modify for ContractAnswers {
    fn modify(&self, openapi: &mut Document) {
        use utoipa::{PartialSchema, ToSchema};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                        .build(),
                )
                .build()
        };
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let params = op.parameters.as_deref().unwrap_or_default();
                let in_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let in_query = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Query));
                let has_body = op.request_body.is_some();
                let secured = op.security.is_some();
                let answers = &mut op.responses.responses;
                let mut add = |status: &str, text: &str| {
                    answers
                        .entry(status.into())
                        .or_insert_with(|| error(text).into());
                };
                if secured {
                    add("401", "No or invalid caller JWT");
                    add("403", "Missing scope");
                }
                if has_body {
                    add(
                        "400",
                        "The body is not JSON (malformed_json, unreadable_body)",
                    );
                    add("413", "The body is larger than server.body_limit_bytes");
                    add(
                        "415",
                        "The body is not sent as Content-Type: application/json",
                    );
                    add("422", "A field was refused (invalid_field, naming it)");
                }
                if in_path {
                    add("400", "A path parameter is malformed (invalid_id)");
                }
                if in_query {
                    add("400", "The query string is unreadable or names an unknown parameter (invalid_query)");
                    add(
                        "422",
                        "A query parameter's value was refused (invalid_field)",
                    );
                }
            }
        }
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .entry(ErrorBody::name().into_owned())
            .or_insert_with(ErrorBody::schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_operation(doc: &Document) -> Vec<(Method, String, &Operation)> {
        doc.paths
            .paths
            .iter()
            .flat_map(|(path, item)| operations(item).map(move |(m, op)| (m, path.clone(), op)))
            .collect()
    }

    #[test]
    fn every_documented_operation_declares_its_audit() {
        let (_, doc, table) = api();
        let ops = every_operation(&doc);
        assert!(ops.len() >= 16, "{} operations", ops.len());
        for (method, path, _) in &ops {
            assert!(
                table.audit(method, path).is_some(),
                "{method} {path} is routed without an audit declaration: register it with \
                 `Registry::audited` (or `unaudited`, saying why)"
            );
        }
    }

    #[test]
    fn every_v1_call_but_reading_the_trail_is_audited_under_its_own_action() {
        let (_, doc, table) = api();
        // Each action names one route (the proxy's one route takes several methods).
        let mut actions = std::collections::HashMap::new();
        for (method, path, _) in every_operation(&doc) {
            let audit = table.audit(&method, &path);
            match audit {
                Some(Audit::Record(action)) => {
                    // The connect link a person opens is audited like the login it starts.
                    assert!(
                        path.starts_with("/v1/") || path.starts_with("/connect/"),
                        "{method} {path}"
                    );
                    let first = actions.entry(action).or_insert_with(|| path.clone());
                    assert_eq!(*first, path, "{action:?} is declared twice");
                }
                _ => assert!(
                    !path.starts_with("/v1/") || path == "/v1/audit",
                    "{method} {path} is not audited"
                ),
            }
        }
    }

    #[test]
    fn every_operation_documents_the_answers_of_its_extractors() {
        let (_, doc, _) = api();
        for (method, path, op) in every_operation(&doc) {
            let answers = &op.responses.responses;
            let secured = op.security.is_some();
            assert_eq!(answers.contains_key("401"), secured, "{method} {path}");
            if secured {
                assert!(answers.contains_key("403"), "{method} {path}");
            }
            if op.request_body.is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(answers.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
}
