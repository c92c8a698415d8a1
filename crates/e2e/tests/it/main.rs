//! Full-stack tests: the deployment files against the binaries, both
//! services together over real HTTP and WebSocket, and the web page in a real
//! browser.

mod browser;
mod deploy;
mod dev_script;
mod full_stack;
mod outage;
mod stack;
