//! The core's warnings captured in a test binary: a `log` logger of its
//! own (a test binary has one logger; its tests share it, so match a line
//! on something of the test's own, such as its session's key).

use std::sync::{Mutex, Once};

/// Every warning logged in this test binary, in order.
struct Warnings(Mutex<Vec<String>>);

impl log::Log for Warnings {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{}", record.args());
            self.0.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(Mutex::new(Vec::new()));

/// Installs the logger (once per test binary): warnings from now on are
/// in [`warning_lines`].
pub fn capture_warnings() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&WARNINGS).expect("the only logger in this test binary");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// The warnings logged so far.
pub fn warning_lines() -> Vec<String> {
    WARNINGS.0.lock().unwrap().clone()
}
