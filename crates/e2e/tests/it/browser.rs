//! The web page in headless Chromium, driven over WebDriver: sign in, submit
//! a job, watch the bar reach 100 % and the clips appear; then restart the
//! API in the middle of a job and watch the page catch up.
//!
//! Screenshots land in `target/e2e-artifacts/`.

use std::path::PathBuf;
use std::time::Duration;

use e2e::webdriver::{Driver, Session, find_browser};
use serde_json::Value;

use crate::stack::Stack;

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/e2e-artifacts")
        .join(name)
}

/// The browser, or `None` (with a note) where none is installed. When the
/// test command runs, `REQUIRE_BROWSER=1` turns a missing browser into a
/// failure instead.
async fn browser() -> Option<(Driver, String)> {
    match find_browser() {
        Some((driver, chromium)) => Some((Driver::start(&driver).await.unwrap(), chromium)),
        None if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
        }
        None => {
            eprintln!("SKIPPED browser test: install chromium and chromium-driver to run it");
            None
        }
    }
}

/// The job's card on the page, as plain data.
const JOB_STATE: &str = r#"
    const li = document.querySelector('li.job');
    if (!li) return null;
    return {
      id: li.dataset.jobId,
      pct: Number(li.querySelector('.bar').getAttribute('aria-valuenow')),
      badge: li.querySelector('.badge').textContent,
      clips: li.querySelectorAll('.clips .clip').length,
      step: li.querySelector('.step').textContent,
    };
"#;

async fn sign_in(s: &Session, stack: &Stack) {
    s.goto(&format!("{}/", stack.api_url)).await.unwrap();
    // Signed out, there is no connection to speak of.
    let badge = s
        .script("return getComputedStyle(document.getElementById('conn')).display")
        .await
        .unwrap();
    assert_eq!(badge, "none", "the connection badge shows while signed out");
    let token = s.find("#token").await.unwrap();
    s.type_into(&token, &stack.token).await.unwrap();
    s.click(&s.find("#signin button[type=submit]").await.unwrap())
        .await
        .unwrap();
    s.wait_for(
        "the submit form after signing in, with the focus on its first field",
        "return !document.getElementById('submit-card').classList.contains('hidden') \
                && document.activeElement.id === 'videoUrl'",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    s.wait_for(
        "the live connection",
        "return document.getElementById('conn').dataset.state === 'live'",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

async fn submit_job(s: &Session, video: &str, clips: u32) {
    let url = s.find("#videoUrl").await.unwrap();
    s.clear(&url).await.unwrap();
    s.type_into(&url, video).await.unwrap();
    let n = s.find("#maxClips").await.unwrap();
    s.clear(&n).await.unwrap();
    s.type_into(&n, &clips.to_string()).await.unwrap();
    s.click(&s.find("#submit-btn").await.unwrap())
        .await
        .unwrap();
}

/// The simulated engine's made-up clips live in this bucket, which does not
/// exist: the page's attempts to load their posters and videos fail by
/// design, and the page says so under each clip (checked below).
const SIMULATED_BUCKET: &str = "https://viewcreator-media.s3.amazonaws.com/";

fn severe(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            !e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(SIMULATED_BUCKET))
        })
        .collect()
}

#[tokio::test]
async fn the_page_follows_a_job_live_and_catches_up_after_an_api_restart() {
    let Some((driver, chromium)) = browser().await else {
        return;
    };
    let mut stack = Stack::start(250).await;
    let s = driver.session(&chromium).await.unwrap();

    // Sign in, submit, follow to the end.
    sign_in(&s, &stack).await;
    submit_job(&s, "https://videos.example/keynote.mp4", 2).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let v = s.script(JOB_STATE).await.unwrap();
        if let Some(p) = v["pct"].as_f64()
            && seen.last() != Some(&p)
        {
            seen.push(p);
        }
        if v["badge"] == "completed" && v["clips"] == 2 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first job did not complete on the page within 60 s; it shows {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["pct"], 100, "{done}");
    assert!(
        seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "the bar moved through intermediate values live: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the bar never went back: {seen:?}"
    );
    // Rendering moves the bar clip by clip (50 % at the first of two clips,
    // 70 % at the second, 95 % uploading), not in one jump.
    assert!(
        seen.iter().any(|p| *p > 50.0 && *p < 95.0),
        "the bar showed a step per rendered clip: {seen:?}"
    );
    let clip_text = s
        .script("return document.querySelector('.clips .clip').textContent")
        .await
        .unwrap();
    assert!(clip_text.as_str().unwrap().contains("score"), "{clip_text}");
    // Each clip shows its poster frame (the clip's URL with .jpg), and a
    // clip that cannot load says so instead of showing a black box.
    let poster = s
        .script("return document.querySelector('.clips .clip video').getAttribute('poster')")
        .await
        .unwrap();
    assert!(
        poster
            .as_str()
            .is_some_and(|p| p.starts_with(SIMULATED_BUCKET) && p.ends_with("/clip_00.jpg")),
        "{poster}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = s
            .script(
                "return [...document.querySelectorAll('.clips .clip .error-text')]\
                 .filter(e => !e.classList.contains('hidden')).length",
            )
            .await
            .unwrap();
        if shown == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the clips that cannot load do not say so: {shown} notices"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the bar's width transition finish before the picture.
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.screenshot(&artifact("completed.png")).await.unwrap();
    let log = s.console_log().await.unwrap();
    assert!(
        severe(&log).is_empty(),
        "console errors: {:#?}",
        severe(&log)
    );

    // A second job; the API is killed once it is under way and comes back
    // a few seconds later. The worker keeps retrying its webhooks, the page
    // keeps reconnecting, and the page ends up showing the finished job.
    submit_job(&s, "https://videos.example/interview.mp4", 6).await;
    s.wait_for(
        "the second job to start",
        "const li = document.querySelector('li.job'); \
         return li && li.dataset.jobId && li.querySelector('.badge').textContent === 'processing' \
                && Number(li.querySelector('.bar').getAttribute('aria-valuenow')) > 0",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let before = s.script(JOB_STATE).await.unwrap();
    stack.kill_api().await;
    s.wait_for(
        "the page to notice the lost connection",
        "return document.getElementById('conn').dataset.state === 'reconnecting'",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    s.screenshot(&artifact("reconnecting.png")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.start_api().await;
    let after = s
        .wait_for(
            "the page to catch up with the finished job",
            "const li = document.querySelector('li.job'); \
             return li && li.querySelector('.badge').textContent === 'completed' \
                    && li.querySelectorAll('.clips .clip').length === 6 \
                    && document.getElementById('conn').dataset.state === 'live'",
            Duration::from_secs(60),
        )
        .await;
    let state = s.script(JOB_STATE).await.unwrap();
    after.unwrap_or_else(|e| panic!("{e}; page shows {state}"));
    assert_eq!(state["id"], before["id"], "the same job card caught up");
    assert_eq!(state["pct"], 100);
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.screenshot(&artifact("caught-up.png")).await.unwrap();

    // A phone's width: nothing overflows sideways.
    s.set_window(390, 844).await.unwrap();
    let overflow = s
        .script("return document.documentElement.scrollWidth - window.innerWidth")
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow of {overflow}px at 390px"
    );
    // ...and a finished job's six clips make one sideways-scrolling row,
    // not a column six clips tall.
    let card = s
        .script(
            "const li = document.querySelector('li.job'); \
             const clips = [...li.querySelectorAll('.clips .clip')].map(c => c.getBoundingClientRect().top); \
             return { height: li.getBoundingClientRect().height, rows: new Set(clips).size, \
                      strip: li.querySelector('.clips').scrollWidth > li.querySelector('.clips').clientWidth }",
        )
        .await
        .unwrap();
    assert_eq!(card["rows"], 1, "{card}");
    assert_eq!(card["strip"], true, "{card}");
    assert!(card["height"].as_f64().unwrap() < 600.0, "{card}");
    s.script("document.querySelector('li.job').scrollIntoView()")
        .await
        .unwrap();
    s.screenshot(&artifact("phone.png")).await.unwrap();

    // A refusal speaks the form's words, not the API's field names.
    submit_job(&s, "ftp://videos.example/keynote.mp4", 2).await;
    s.wait_for(
        "the refusal of an ftp URL, in the form's words",
        "const m = document.getElementById('submit-msg').textContent; \
         return m.includes('Video URL') && !m.includes('videoUrl')",
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    s.quit().await.unwrap();
    stack.cleanup().await;
}
