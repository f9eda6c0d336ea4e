//! PHP parses the request itself: $_GET, $_POST, $_FILES, $_COOKIE, $_REQUEST, php://input
//! and $_SERVER, as under php-fpm behind nginx.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod common;

use common::{TestServer, client};
use serde_json::{Value, json};

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn get_post_cookie_request() {
    let server = TestServer::start(&[]);
    let r = client()
        .post(server.url("/superglobals.php?a=1&list[]=x&list[]=y"))
        .header("Cookie", "c1=one")
        .header("Cookie", "c2=two")
        .form(&[("b", "2"), ("nested[k]", "v")])
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(v["get"], json!({"a": "1", "list": ["x", "y"]}));
    assert_eq!(v["post"], json!({"b": "2", "nested": {"k": "v"}}));
    assert_eq!(v["cookie"], json!({"c1": "one", "c2": "two"}));
    // request_order defaults to GP: POST wins over GET for the same name.
    assert_eq!(v["request"]["a"], "1");
    assert_eq!(v["request"]["b"], "2");
    assert_eq!(v["method"], "POST");
}

#[tokio::test]
async fn php_input_for_every_method_with_a_body() {
    let server = TestServer::start(&[]);
    for method in ["PUT", "PATCH", "DELETE", "POST"] {
        let r = client()
            .request(method.parse().unwrap(), server.url("/superglobals.php"))
            .header("Content-Type", "application/json")
            .body(r#"{"hello":"world"}"#)
            .send()
            .await
            .unwrap();
        let v = json(r).await;
        assert_eq!(v["input"], r#"{"hello":"world"}"#, "{method}");
        assert_eq!(v["method"], method);
    }
}

#[tokio::test]
async fn multipart_upload_with_two_files_and_array_names() {
    let server = TestServer::start(&[]);
    let form = reqwest::multipart::Form::new()
        .text("title", "report")
        .text("user[name]", "ada")
        .text("user[roles][]", "admin")
        .text("user[roles][]", "dev")
        .part(
            "docs[]",
            reqwest::multipart::Part::bytes(b"first file".to_vec())
                .file_name("a.txt")
                .mime_str("text/plain")
                .unwrap(),
        )
        .part(
            "docs[]",
            reqwest::multipart::Part::bytes(b"second file!".to_vec())
                .file_name("b.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let r = client()
        .post(server.url("/superglobals.php"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(
        v["post"],
        json!({"title": "report", "user": {"name": "ada", "roles": ["admin", "dev"]}})
    );
    // Exactly the shape php-fpm gives for `docs[]` (PHP 8.1+ adds full_path).
    assert_eq!(
        v["files"],
        json!({"docs": {
            "name": ["a.txt", "b.csv"],
            "full_path": ["a.txt", "b.csv"],
            "type": ["text/plain", "text/csv"],
            "tmp_name": ["exists", "exists"],
            "error": [0, 0],
            "size": [10, 12],
        }})
    );
    assert_eq!(v["file_contents"], json!(["first file", "second file!"]));
}

#[tokio::test]
async fn upload_temp_files_are_removed_after_the_request() {
    let server = TestServer::start(&[]);
    let form = reqwest::multipart::Form::new().part(
        "f",
        reqwest::multipart::Part::bytes(vec![b'z'; 5000]).file_name("z.bin"),
    );
    let r = client()
        .post(server.url("/upload_paths.php"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    let path = body.lines().next().expect("a temp path");
    assert!(!path.is_empty());
    assert!(
        !std::path::Path::new(path).exists(),
        "{path} still exists after the request"
    );
}

#[tokio::test]
async fn php_enforces_upload_limits() {
    let server = TestServer::start(&[]);
    // upload_max_filesize defaults to 2M: PHP reports error 1 (UPLOAD_ERR_INI_SIZE).
    let form = reqwest::multipart::Form::new().part(
        "f",
        reqwest::multipart::Part::bytes(vec![b'z'; 3 * 1024 * 1024]).file_name("big.bin"),
    );
    let r = client()
        .post(server.url("/superglobals.php"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(v["files"]["f"]["error"], 1);
    assert_eq!(v["files"]["f"]["size"], 0);
}

#[tokio::test]
async fn server_vars_as_php_fpm_fills_them() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/server.php?x=1&y=2"))
        .header("X-Custom-Header", "custom")
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    let root = common::fixtures().canonicalize().unwrap();
    let root = root.to_str().unwrap();
    assert_eq!(v["REQUEST_METHOD"], "GET");
    assert_eq!(v["REQUEST_URI"], "/server.php?x=1&y=2");
    assert_eq!(v["QUERY_STRING"], "x=1&y=2");
    assert_eq!(v["SCRIPT_NAME"], "/server.php");
    assert_eq!(v["PHP_SELF"], "/server.php");
    assert_eq!(v["SCRIPT_FILENAME"], format!("{root}/server.php"));
    assert_eq!(v["DOCUMENT_ROOT"], root);
    assert_eq!(v["SERVER_NAME"], "127.0.0.1");
    assert_eq!(v["SERVER_PORT"], server.addr.port().to_string());
    assert_eq!(v["SERVER_ADDR"], "127.0.0.1");
    assert_eq!(v["SERVER_PROTOCOL"], "HTTP/1.1");
    assert!(
        v["SERVER_SOFTWARE"]
            .as_str()
            .unwrap()
            .starts_with("tokio_php/")
    );
    assert_eq!(v["GATEWAY_INTERFACE"], "CGI/1.1");
    assert_eq!(v["REMOTE_ADDR"], "127.0.0.1");
    assert!(v["REMOTE_PORT"].as_str().unwrap().parse::<u16>().is_ok());
    assert_eq!(v["REQUEST_SCHEME"], "http");
    assert!(v.get("HTTPS").is_none());
    assert_eq!(v["CONTENT_TYPE"], "");
    assert_eq!(v["CONTENT_LENGTH"], "");
    assert!(v["REQUEST_TIME"].as_i64().unwrap() > 1_700_000_000);
    assert!(v["REQUEST_TIME_FLOAT"].as_f64().unwrap() > 1_700_000_000.0);
    assert_eq!(v["HTTP_X_CUSTOM_HEADER"], "custom");
    assert_eq!(v["HTTP_HOST"], format!("127.0.0.1:{}", server.addr.port()));
    assert_eq!(v["PHP_AUTH_USER"], "alice");
    assert_eq!(v["PHP_AUTH_PW"], "s3cret");
    assert!(v.get("PATH_INFO").is_none());
}

#[tokio::test]
async fn path_info_after_the_script() {
    let server = TestServer::start(&[]);
    let r = client()
        .get(server.url("/pathinfo.php/extra/path?q=1"))
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(v["SCRIPT_NAME"], "/pathinfo.php");
    assert_eq!(v["PATH_INFO"], "/extra/path");
    assert_eq!(v["PHP_SELF"], "/pathinfo.php/extra/path");
    assert_eq!(v["REQUEST_URI"], "/pathinfo.php/extra/path?q=1");
    assert_eq!(v["QUERY_STRING"], "q=1");
}

#[tokio::test]
async fn post_content_type_and_length_are_passed() {
    let server = TestServer::start(&[]);
    let r = client()
        .post(server.url("/server.php"))
        .header("Content-Type", "text/plain")
        .body("12345")
        .send()
        .await
        .unwrap();
    let v = json(r).await;
    assert_eq!(v["CONTENT_TYPE"], "text/plain");
    assert_eq!(v["CONTENT_LENGTH"], "5");
}

#[tokio::test]
async fn server_software_is_configurable() {
    let server = TestServer::start(&[("SERVER_SOFTWARE", "nginx (tokio_php)")]);
    let v = json(
        client()
            .get(server.url("/server.php"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["SERVER_SOFTWARE"], "nginx (tokio_php)");
}

/// WordPress decides from SERVER_SOFTWARE whether the server rewrites URLs (pretty
/// permalinks): its own wp-includes/vars.php sets `$is_nginx`, which `got_url_rewrite()`
/// reads. Debian's `wordpress` package provides the file (scripts/setup-test-deps.sh).
#[tokio::test]
async fn wordpress_takes_a_server_software_with_nginx_for_nginx() {
    let vars = std::path::Path::new("/usr/share/wordpress/wp-includes/vars.php");
    if !vars.is_file() {
        eprintln!(
            "skipped: {} is missing (Debian's wordpress package)",
            vars.display()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("wp.php"),
        format!(
            "<?php function is_admin() {{ return false; }}\n\
             require '{}';\n\
             echo json_encode(['nginx' => $is_nginx, 'apache' => $is_apache, 'iis' => $is_IIS]);",
            vars.display()
        ),
    )
    .unwrap();
    let server =
        TestServer::start_with_root(root.path(), &[("SERVER_SOFTWARE", "nginx (tokio_php)")]);
    let v = json(client().get(server.url("/wp.php")).send().await.unwrap()).await;
    assert_eq!(v, json!({"nginx": true, "apache": false, "iis": false}));
    drop(server);
    let server = TestServer::start_with_root(root.path(), &[]);
    let v = json(client().get(server.url("/wp.php")).send().await.unwrap()).await;
    assert_eq!(v, json!({"nginx": false, "apache": false, "iis": false}));
}
