//! The kernel build configuration (`/proc/config.gz`, else `/boot/config-$(uname -r)`).

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

/// How the kernel preempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreemptModel {
    /// `PREEMPT_RT`: fully preemptible.
    Rt,
    /// `PREEMPT`: low-latency desktop.
    Full,
    /// `PREEMPT_VOLUNTARY`.
    Voluntary,
    /// `PREEMPT_NONE`: server.
    None,
    /// Not stated in the config.
    Unknown,
}

/// A parsed kernel configuration and where it came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelConfig {
    /// The file it was read from (`/proc/config.gz` or `/boot/config-...`).
    pub source: String,
    /// `CONFIG_FOO` -> value (`y`, `m`, `250`, `"string"`); `n` for "is not set".
    #[serde(skip)]
    pub options: BTreeMap<String, String>,
}

impl KernelConfig {
    /// Parse the text of a `.config`.
    pub fn parse(text: &str, source: &str) -> KernelConfig {
        let mut options = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    options.insert(name.to_string(), "n".to_string());
                }
            } else if let Some(rest) = line.strip_prefix("CONFIG_") {
                if let Some((k, v)) = rest.split_once('=') {
                    options.insert(k.to_string(), v.to_string());
                }
            }
        }
        KernelConfig {
            source: source.to_string(),
            options,
        }
    }

    /// Decompress and parse `/proc/config.gz` contents.
    pub fn parse_gz(bytes: &[u8], source: &str) -> std::io::Result<KernelConfig> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
        Ok(Self::parse(&text, source))
    }

    /// The raw value of `CONFIG_<name>` (without the prefix), if the config mentions it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// Whether `CONFIG_<name>` is built in or a module (`y`/`m`).
    pub fn enabled(&self, name: &str) -> bool {
        matches!(self.value(name), Some("y") | Some("m"))
    }

    /// `CONFIG_HZ`.
    pub fn hz(&self) -> Option<u32> {
        self.value("HZ").and_then(|v| v.parse().ok())
    }

    /// The preemption model.
    pub fn preempt(&self) -> PreemptModel {
        if self.enabled("PREEMPT_RT") {
            PreemptModel::Rt
        } else if self.enabled("PREEMPT") {
            PreemptModel::Full
        } else if self.enabled("PREEMPT_VOLUNTARY") {
            PreemptModel::Voluntary
        } else if self.enabled("PREEMPT_NONE") {
            PreemptModel::None
        } else {
            PreemptModel::Unknown
        }
    }

    /// Whether the preemption model can be chosen at boot (`preempt=`).
    pub fn preempt_dynamic(&self) -> bool {
        self.enabled("PREEMPT_DYNAMIC")
    }

    /// Tracers and tracing features isol cares about, as `(name, enabled)`.
    pub fn tracing(&self) -> Vec<(&'static str, bool)> {
        [
            "FTRACE",
            "TRACEPOINTS",
            "FUNCTION_TRACER",
            "HIST_TRIGGERS",
            "OSNOISE_TRACER",
            "TIMERLAT_TRACER",
        ]
        .into_iter()
        .map(|n| (n, self.enabled(n)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#\n# Automatically generated\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n\
        CONFIG_NO_HZ_COMMON=y\n# CONFIG_NO_HZ_FULL is not set\nCONFIG_NO_HZ_IDLE=y\n\
        CONFIG_PREEMPT_VOLUNTARY=y\nCONFIG_PREEMPT_DYNAMIC=y\nCONFIG_LOCALVERSION=\"-fc\"\n";

    #[test]
    fn parses_values_and_unset() {
        let c = KernelConfig::parse(SAMPLE, "/proc/config.gz");
        assert_eq!(c.hz(), Some(250));
        assert!(!c.enabled("NO_HZ_FULL"));
        assert_eq!(c.value("NO_HZ_FULL"), Some("n"));
        assert_eq!(c.value("RCU_NOCB_CPU"), None);
        assert!(c.enabled("NO_HZ_IDLE"));
        assert_eq!(c.preempt(), PreemptModel::Voluntary);
        assert!(c.preempt_dynamic());
        assert_eq!(c.value("LOCALVERSION"), Some("\"-fc\""));
    }

    #[test]
    fn reads_gzip() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(SAMPLE.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let c = KernelConfig::parse_gz(&gz, "x").unwrap();
        assert_eq!(c.hz(), Some(250));
        assert!(KernelConfig::parse_gz(b"not gzip", "x").is_err());
    }
}
