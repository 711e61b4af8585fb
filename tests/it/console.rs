//! The web console at `/ui` in a real headless Chromium driven over WebDriver (chromedriver,
//! both from Debian's packages; `scripts/test` installs them): the real binary `serve` on a copy
//! of the shipped registry with credentials. Without a token only the sign-in shows and a wrong
//! one is refused; signed in, a context opens, a translator case runs, two contract versions are
//! compared, and a dead letter is redriven from the console once its cause is fixed: it leaves
//! the list and reaches the downstream context; another is deleted. A screenshot of the console
//! is written to `CONTEXTGATE_SCREENSHOT` (default: the test's target directory), its path
//! printed.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use contextgate::api::auth::hash_token;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    KillOnDrop, event_body, example, http, order_placed, repo, serve_binary, shipped_registry_copy,
};

const OPERATOR: &str = "console-operator-token";
const SHIPPING: &str = "console-shipping-token";

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// The real binary on a copy of the shipped registry, with an operator's and shipping's tokens.
struct Gateway {
    base: String,
    // Killed before its registry folder is removed.
    _child: KillOnDrop,
    _dir: TempDir,
}

fn start_gateway() -> Gateway {
    let dir = shipped_registry_copy();
    let credentials = dir.path().join("credentials.toml");
    std::fs::write(
        &credentials,
        format!(
            "operator = [{:?}]\n[contexts]\nshipping = [{:?}]\n",
            hash_token(OPERATOR),
            hash_token(SHIPPING)
        ),
    )
    .unwrap();
    let (child, base) = serve_binary(
        Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--credentials"])
            .arg(&credentials)
            .arg("--registry")
            .arg(dir.path())
            .env_remove("CONTEXTGATE_CREDENTIALS")
            .env_remove("CONTEXTGATE_AMQP_URL")
            .env_remove("CONTEXTGATE_REGISTRY_STORE"),
    );
    Gateway {
        base,
        _child: KillOnDrop(child),
        _dir: dir,
    }
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    // Killed before its profile folder is removed.
    _driver: ProcessGroup,
    _profile: TempDir,
}

/// chromedriver and the Chromium it started, killed together when the test ends: a test that
/// fails never closes its session, and Chromium would outlive a chromedriver killed alone.
struct ProcessGroup(std::process::Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

async fn start_browser() -> Browser {
    for program in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            std::path::Path::new(program).exists(),
            "{program} is missing: the console test needs Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver; scripts/test installs them)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = ProcessGroup(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Its own process group, which the Chromium it starts joins: see `ProcessGroup`.
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http()
        .get(format!("{webdriver}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < PATIENCE,
            "chromedriver did not answer on {webdriver}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = TempDir::new().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                // Tests run as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1440,1500",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&webdriver)
        .await
        .expect("a headless Chromium session");
    Browser {
        client,
        _driver: driver,
        _profile: profile,
    }
}

/// Waits until the JavaScript expression `condition` is true in the page.
async fn until(client: &Client, condition: &str, what: &str) {
    let started = Instant::now();
    loop {
        let holds = client
            .execute(&format!("return Boolean({condition});"), Vec::new())
            .await
            .unwrap();
        if holds == Value::Bool(true) {
            return;
        }
        if started.elapsed() > PATIENCE {
            let text = client
                .execute("return document.body.innerText;", Vec::new())
                .await
                .unwrap();
            panic!("{what}: not within {PATIENCE:?}; the page shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the element `selector` is shown (present and not hidden).
fn shown(selector: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({selector:?}); return e !== null && e.offsetParent !== null; }})()"
    )
}

async fn sign_in(client: &Client, token: &str) {
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(token).await.unwrap();
    client
        .find(Locator::Id("signin-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn click(client: &Client, selector: &str) {
    until(client, &shown(selector), &format!("{selector} shows")).await;
    client
        .find(Locator::Css(selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// An `OrderPlaced@2` shipped to `country`.
fn order(order_id: &str, country: &str) -> String {
    let mut data = example("orders/OrderPlaced/examples/v2/web-one-warehouse.json");
    data["order_id"] = json!(order_id);
    data["shipping_address"]["country"] = json!(country);
    event_body("orders/OrderPlaced@2", order_id, &data.to_string())
}

async fn post_order(base: &str, body: String) {
    let response = http()
        .post(format!("{base}/v1/contexts/orders/messages"))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}: {}",
        response.status(),
        response.text().await.unwrap()
    );
}

async fn api(method: reqwest::Method, url: String, token: &str) -> Value {
    let response = http()
        .request(method, url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Where the screenshot goes: `CONTEXTGATE_SCREENSHOT`, else beside the test binary.
fn screenshot_path() -> PathBuf {
    std::env::var_os("CONTEXTGATE_SCREENSHOT").map_or_else(
        || {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("console.png")
        },
        PathBuf::from,
    )
}

#[tokio::test]
async fn without_a_token_the_console_shows_only_the_sign_in_and_refuses_a_wrong_token() {
    let gateway = start_gateway();
    let browser = start_browser().await;
    let client = &browser.client;

    // Served with its content types and a strict policy.
    let page = http()
        .get(format!("{}/ui/", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let module = http()
        .get(format!("{}/ui/app.js", gateway.base))
        .send()
        .await
        .unwrap();
    assert!(
        module.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(module.headers()["x-content-type-options"], "nosniff");

    client.goto(&format!("{}/ui", gateway.base)).await.unwrap();
    until(client, &shown("#signin-form"), "the sign-in form shows").await;
    let styled = client
        .execute(
            "return getComputedStyle(document.querySelector('header.bar')).display;",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        styled,
        json!("flex"),
        "the style sheet applies under the policy"
    );
    let app_hidden = client
        .execute(
            "return document.getElementById('app').hidden && document.getElementById('nav').children.length === 0 && document.getElementById('view').children.length === 0;",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        app_hidden,
        json!(true),
        "nothing but the sign-in without a token"
    );

    sign_in(client, "not-a-token").await;
    until(client, &shown("#signin-error"), "the refusal shows").await;
    let error = client.find(Locator::Id("signin-error")).await.unwrap();
    assert_eq!(error.text().await.unwrap(), "This token was refused.");
    let kept = client
        .execute(
            "return [sessionStorage.getItem('contextgate.token'), document.getElementById('app').hidden];",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(kept, json!([null, true]), "a refused token is not kept");

    // A wrong token kept by the tab (one revoked since, say) is refused on load as well, and the
    // API calls the page makes with it fail.
    let status = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             sessionStorage.setItem('contextgate.token', 'revoked-token');
             fetch('/v1/routes', {headers: {Authorization: 'Bearer revoked-token'}}).then((r) => done(r.status));",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));
    client.refresh().await.unwrap();
    until(client, &shown("#signin-error"), "the kept token is refused").await;
    let kept = client
        .execute(
            "return [sessionStorage.getItem('contextgate.token'), document.getElementById('app').hidden];",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(kept, json!([null, true]));

    // A context's token sees its own context only.
    sign_in(client, SHIPPING).await;
    until(
        client,
        &shown("#nav a[data-context=shipping]"),
        "shipping's context shows",
    )
    .await;
    let contexts = client
        .execute(
            "return [...document.querySelectorAll('#nav a[data-context]')].map((a) => a.dataset.context);",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(contexts, json!(["shipping"]));
    assert_eq!(
        client
            .find(Locator::Id("who"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "signed in as context shipping"
    );
    // Another context's contracts, asked for by address: the API's 403, said plainly.
    client
        .goto(&format!("{}/ui/#/contexts/orders", gateway.base))
        .await
        .unwrap();
    until(
        client,
        "document.querySelector('#contracts .error')?.textContent === 'This token may not see or do this.'",
        "orders' contracts are refused to shipping's token",
    )
    .await;

    // The endpoints the console added keep the API's tenancy: shipping's token reads its own,
    // never another context's, and no token reads nothing.
    let status = |path: &'static str, token: Option<&'static str>, post: bool| {
        let url = format!("{}{path}", gateway.base);
        async move {
            let request = if post {
                http()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(r#"{"name": "n", "input": {}, "expect_drop": true}"#)
            } else {
                http().get(url)
            };
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            request.send().await.unwrap().status().as_u16()
        }
    };
    let compat = "/v1/contexts/orders/contracts/OrderPlaced/compat?from=1&to=2";
    assert_eq!(status(compat, Some(SHIPPING), false).await, 403);
    assert_eq!(status(compat, Some(OPERATOR), false).await, 200);
    assert_eq!(status(compat, None, false).await, 401);
    let run = "/v1/contexts/customers/translators/publish_customer_updated/run";
    assert_eq!(status(run, Some(SHIPPING), true).await, 403);
    assert_eq!(status(run, Some(OPERATOR), true).await, 200);
    let stats = "/v1/routes/orders-to-payments/stats";
    assert_eq!(status(stats, Some(SHIPPING), false).await, 403);
    assert_eq!(
        status("/v1/routes/orders-to-shipping/stats", Some(SHIPPING), false).await,
        200
    );
    assert_eq!(status("/v1/whoami", Some("not-a-token"), false).await, 401);
    browser.client.close().await.unwrap();
}

#[tokio::test]
async fn the_console_redrives_a_dead_letter_once_its_cause_is_fixed_and_sees_it_go() {
    let gateway = start_gateway();
    let base = &gateway.base;
    // Arrange: an order to Switzerland, which no warehouse of shipping's translator serves.
    post_order(base, order("o-2001", "CH")).await;
    let dead_letters = format!("{base}/v1/routes/orders-to-shipping/dead-letters");
    let page = api(reqwest::Method::GET, dead_letters.clone(), OPERATOR).await;
    assert_eq!(page["total"], 1, "{page}");
    let id = page["dead_letters"][0]["id"].as_str().unwrap().to_owned();
    let browser = start_browser().await;
    let client = &browser.client;

    // Sign in as the operator and open shipping.
    client.goto(&format!("{base}/ui")).await.unwrap();
    until(client, &shown("#signin-form"), "the sign-in form shows").await;
    sign_in(client, OPERATOR).await;
    click(client, "#nav a[data-context=shipping]").await;
    until(
        client,
        "document.getElementById('context-name')?.textContent === 'shipping'",
        "shipping opens",
    )
    .await;
    let row = format!("[data-dead-letters=orders-to-shipping] tr[data-dead-letter={id:?}]");
    until(client, &shown(&row), "the dead letter is listed").await;
    let listed = client
        .find(Locator::Css(&row))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("no warehouse serves country CH"),
        "{listed}"
    );

    // Its AsyncAPI document, as the API gives it.
    click(client, "#asyncapi .show-asyncapi").await;
    until(
        client,
        "(() => { const d = document.querySelector('#asyncapi .asyncapi-document'); if (!d) return false; const doc = JSON.parse(d.textContent); return doc.asyncapi === '3.0.0' && doc.id === 'urn:contextgate:context:shipping'; })()",
        "shipping's AsyncAPI document shows",
    )
    .await;

    // Its translator's script and cases; a case runs in the sandbox and passes.
    click(
        client,
        "[data-translator='shipping/prepare_shipments'] .open-translator",
    )
    .await;
    click(
        client,
        "[data-translator='shipping/prepare_shipments'] [data-case='0'] .run-case",
    )
    .await;
    until(
        client,
        "document.querySelector(\"[data-translator='shipping/prepare_shipments'] [data-case='0'] .case-result .badge\")?.textContent === 'passed'",
        "the case passes",
    )
    .await;

    // Inspecting the dead letter shows the input as kept.
    click(client, &format!("{row} .inspect")).await;
    until(
        client,
        "document.querySelector('tr.details:not([hidden]) .inspect-view')?.textContent.includes('o-2001')",
        "the dead letter's input shows",
    )
    .await;

    // Act: fix the cause (shipping now serves Switzerland), then redrive from the console.
    let translator_url = format!("{base}/v1/contexts/shipping/translators/prepare_shipments");
    let mut translator = api(reqwest::Method::GET, translator_url.clone(), SHIPPING).await;
    let script = translator["script"].as_str().unwrap().to_owned();
    assert!(script.contains("\"IT\"]"), "{script}");
    translator["script"] = json!(script.replace("\"IT\"]", "\"IT\", \"CH\"]"));
    let replaced = http()
        .put(&translator_url)
        .bearer_auth(SHIPPING)
        .header("content-type", "application/json")
        .body(translator.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200, "{}", replaced.text().await.unwrap());
    click(client, &format!("{row} .redrive")).await;

    // Assert: it leaves the list, the console says it was forwarded, and shipping has it.
    until(
        client,
        &format!("document.querySelector({row:?}) === null"),
        "the dead letter leaves the list",
    )
    .await;
    until(
        client,
        "document.getElementById('flash').textContent.includes('1 forward')",
        "the console says it was forwarded",
    )
    .await;
    until(
        client,
        "document.querySelector('[data-dead-letters=orders-to-shipping] .empty')?.textContent === 'No dead letters.'",
        "the route's list is empty",
    )
    .await;
    let page = api(reqwest::Method::GET, dead_letters, OPERATOR).await;
    assert_eq!(page["total"], 0, "{page}");
    let inbox = api(
        reqwest::Method::GET,
        format!("{base}/v1/contexts/shipping/inbox"),
        SHIPPING,
    )
    .await;
    let shipments: Vec<&Value> = inbox
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["data"]["order_id"] == "o-2001")
        .collect();
    assert_eq!(shipments.len(), 1, "{inbox}");
    assert_eq!(shipments[0]["data"]["address"]["country"], "CH");

    // Two versions of orders' OrderPlaced compared: a v3 that requires a new property (registered
    // as a breaking change on purpose) breaks v2's writers, with a counterexample.
    let mut v3 = order_placed(&repo(), 2);
    v3["properties"]["priority"] = json!({"type": "string", "enum": ["normal", "express"]});
    v3["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("priority"));
    let registered = http()
        .put(format!(
            "{base}/v1/contexts/orders/contracts/OrderPlaced/versions/3?accept_breaking=console%20test"
        ))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(v3.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        registered.status(),
        201,
        "{}",
        registered.text().await.unwrap()
    );
    click(client, "#nav a[data-context=orders]").await;
    click(client, "[data-contract='orders/OrderPlaced'] button.diff").await;
    until(
        client,
        "document.querySelector('.comparison [data-direction=backward] .counterexample') !== null",
        "the comparison shows a counterexample",
    )
    .await;
    let comparison = client
        .find(Locator::Css(".comparison"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(comparison.contains("v2 → v3"), "{comparison}");
    assert!(comparison.contains("incompatible"), "{comparison}");
    assert!(
        comparison.contains("REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL")
            && comparison.contains("#/properties/priority"),
        "{comparison}"
    );
    assert!(
        comparison.contains("valid under v2, rejected by v3"),
        "{comparison}"
    );

    // The overview: the map and live rates, while orders flow.
    click(client, "#nav a[data-view=overview]").await;
    until(
        client,
        "document.getElementById('context-map')?.complete && document.getElementById('context-map').naturalWidth > 0",
        "the map shows",
    )
    .await;
    let flow = {
        let base = base.clone();
        tokio::spawn(async move {
            // One in ten goes to Japan, which no warehouse serves: a failure rate to show.
            for n in 0..80 {
                let country = if n % 10 == 9 { "JP" } else { "NL" };
                post_order(&base, order(&format!("o-{}", 3000 + n), country)).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    until(
        client,
        "[...document.querySelectorAll('#routes tr[data-route=orders-to-shipping] td.rate')].some((td) => parseFloat(td.textContent) > 0)",
        "orders-to-shipping shows a rate",
    )
    .await;
    let screenshot = client.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path();
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).unwrap();
    }
    std::fs::write(&path, screenshot).unwrap();
    println!("console screenshot: {}", path.display());
    flow.await.unwrap();

    // Deleting one of the Japanese orders' dead letters takes a second click, and it is gone.
    let page = api(
        reqwest::Method::GET,
        format!("{base}/v1/routes/orders-to-shipping/dead-letters"),
        OPERATOR,
    )
    .await;
    let doomed = page["dead_letters"][0]["id"].as_str().unwrap().to_owned();
    client
        .goto(&format!("{base}/ui/#/routes/orders-to-shipping"))
        .await
        .unwrap();
    let row = format!("[data-dead-letters=orders-to-shipping] tr[data-dead-letter={doomed:?}]");
    click(client, &format!("{row} .delete")).await;
    until(
        client,
        &format!(
            "document.querySelector({:?})?.textContent === 'Really delete?'",
            format!("{row} .delete")
        ),
        "the delete asks again",
    )
    .await;
    click(client, &format!("{row} .delete")).await;
    until(
        client,
        &format!("document.querySelector({row:?}) === null"),
        "the deleted dead letter leaves the list",
    )
    .await;
    let gone = http()
        .get(format!(
            "{base}/v1/routes/orders-to-shipping/dead-letters/{doomed}"
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    browser.client.close().await.unwrap();
}
