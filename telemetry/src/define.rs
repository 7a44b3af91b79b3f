//! Constructors for metric definitions. Every definition in the daemons'
//! metrics modules is a constant name, help text and label list: one that
//! does not build (an invalid name) is a bug in that module, which its unit
//! tests find, so these do not return errors.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

pub fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter definition")
}

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
}

/// A counter of fractional values (seconds) by labels.
pub fn float_counter_vec(name: &str, help: &str, labels: &[&str]) -> CounterVec {
    CounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid gauge definition")
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge definition")
}

pub fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid histogram definition")
}

pub fn histogram_vec(name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_build_and_count() {
        let c = counter_vec("berth_x_total", "x", &["kind"]);
        c.with_label_values(&["a"]).inc();
        assert_eq!(c.with_label_values(&["a"]).get(), 1);
        let h = histogram_vec("berth_y_seconds", "y", vec![0.1, 1.0], &["loop"]);
        h.with_label_values(&["p"]).observe(0.5);
        assert_eq!(h.with_label_values(&["p"]).get_sample_count(), 1);
        assert_eq!(gauge("berth_z", "z").get(), 0);
    }
}
