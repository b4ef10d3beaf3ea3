//! The simulator is deterministic, its scenarios have the shapes they promise,
//! and its imperfections come in the fractions asked for.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kpiflow_ingest::simulator::{
    Event, MalformedKind, Scenario, SimConfig, SimRecord, Simulator, Timing,
};
use kpiflow_types::{
    EquipmentEvent, EquipmentKind, LogisticsEvent, MachineState, ProductionEvent, SaleKind,
    SalesEvent, Stream,
};

const MINUTE_MS: i64 = 60_000;

fn config(scenario: Scenario, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        scenario,
        ..SimConfig::default()
    }
}

/// Clean events up to `minutes` after the start.
fn events_until(config: SimConfig, minutes: i64) -> Vec<Event> {
    let end = config.start.timestamp_millis() + minutes * MINUTE_MS;
    Simulator::new(config)
        .map(|r| r.event.expect("no malformed records asked for"))
        .take_while(|e| e.event_time().timestamp_millis() < end)
        .collect()
}

fn offset_min(config: &SimConfig, t: DateTime<Utc>) -> f64 {
    (t.timestamp_millis() - config.start.timestamp_millis()) as f64 / MINUTE_MS as f64
}

#[test]
fn same_seed_and_options_give_the_same_bytes() {
    let options = SimConfig {
        out_of_order: 0.1,
        late: 0.02,
        malformed: 0.05,
        ..config(Scenario::Peak, 7)
    };
    let a: Vec<SimRecord> = Simulator::new(options.clone()).take(20_000).collect();
    let b: Vec<SimRecord> = Simulator::new(options.clone()).take(20_000).collect();
    assert_eq!(a, b);

    let other_seed: Vec<SimRecord> = Simulator::new(SimConfig { seed: 8, ..options })
        .take(20_000)
        .collect();
    assert_ne!(a, other_seed);
}

#[test]
fn injected_imperfections_do_not_change_the_underlying_events() {
    let clean = config(Scenario::Normal, 3);
    let dirty = SimConfig {
        malformed: 0.3,
        out_of_order: 0.2,
        ..clean.clone()
    };
    let a: Vec<(Stream, String)> = Simulator::new(clean)
        .take(5_000)
        .map(|r| (r.stream, r.key))
        .collect();
    let b: Vec<(Stream, String)> = Simulator::new(dirty)
        .take(5_000)
        .map(|r| (r.stream, r.key))
        .collect();
    assert_eq!(a, b);
}

#[test]
fn every_stream_appears_and_keys_match_the_key_field() {
    let records: Vec<SimRecord> = Simulator::new(config(Scenario::Normal, 1))
        .take(10_000)
        .collect();
    let mut per_stream: HashMap<Stream, usize> = HashMap::new();
    for r in &records {
        *per_stream.entry(r.stream).or_default() += 1;
        let json: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(json[r.stream.key_field()].as_str(), Some(r.key.as_str()));
        let round_trip_ok = match r.stream {
            Stream::Sales => serde_json::from_slice::<SalesEvent>(&r.payload).is_ok(),
            Stream::Production => serde_json::from_slice::<ProductionEvent>(&r.payload).is_ok(),
            Stream::Logistics => serde_json::from_slice::<LogisticsEvent>(&r.payload).is_ok(),
            Stream::Equipment => serde_json::from_slice::<EquipmentEvent>(&r.payload).is_ok(),
        };
        assert!(round_trip_ok, "{}", String::from_utf8_lossy(&r.payload));
    }
    for stream in Stream::ALL {
        assert!(
            per_stream.get(&stream).copied().unwrap_or(0) > 300,
            "{per_stream:?}"
        );
    }
    // Clean events come in event-time order.
    let times: Vec<_> = records
        .iter()
        .map(|r| r.event.as_ref().unwrap().event_time())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

fn sales_between(events: &[Event], config: &SimConfig, from_min: f64, to_min: f64) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Sales(_)))
        .filter(|e| (from_min..to_min).contains(&offset_min(config, e.event_time())))
        .count()
}

#[test]
fn peak_scenario_has_about_five_times_the_sales_in_its_hour() {
    let normal = config(Scenario::Normal, 11);
    let peak = config(Scenario::Peak, 11);
    let normal_events = events_until(normal.clone(), 95);
    let peak_events = events_until(peak.clone(), 95);
    let (from, to) = Scenario::PEAK_WINDOW_MS;
    let (from, to) = (from as f64 / 60_000.0, to as f64 / 60_000.0);
    let ratio = sales_between(&peak_events, &peak, from, to) as f64
        / sales_between(&normal_events, &normal, from, to) as f64;
    assert!((4.5..5.5).contains(&ratio), "peak/normal sales = {ratio}");
    // Outside the peak the two days are alike.
    let before = sales_between(&peak_events, &peak, 0.0, from) as f64
        / sales_between(&normal_events, &normal, 0.0, from) as f64;
    assert!((0.9..1.1).contains(&before), "before the peak: {before}");
}

#[test]
fn fault_scenario_stops_the_line_until_maintenance_ends() {
    let cfg = config(Scenario::Fault, 5);
    let events = events_until(cfg.clone(), 80);
    let (fault, maintenance, running) = Scenario::FAULT_TIMES_MS;
    let to_min = |ms: i64| ms as f64 / MINUTE_MS as f64;
    let output = |from: f64, to: f64| -> i64 {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Production(p) if p.line_id == Scenario::FAULT_LINE => Some(p),
                _ => None,
            })
            .filter(|p| (from..to).contains(&offset_min(&cfg, p.event_time)))
            .map(|p| p.quantity_good + p.quantity_scrap)
            .sum()
    };
    assert!(
        output(0.0, to_min(fault)) > 1_000,
        "line runs before the fault"
    );
    assert_eq!(
        output(to_min(fault), to_min(running)),
        0,
        "no output while down"
    );
    assert!(
        output(to_min(running), 80.0) > 1_000,
        "line runs after maintenance"
    );

    let states: Vec<(f64, MachineState, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Equipment(q)
                if q.device_id == Scenario::FAULT_DEVICE && q.kind == EquipmentKind::State =>
            {
                Some((
                    offset_min(&cfg, q.event_time),
                    q.state,
                    q.fault_code.clone(),
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (
                to_min(fault),
                MachineState::Fault,
                Some("E-HYD-PRESSURE".into())
            ),
            (to_min(maintenance), MachineState::Maintenance, None),
            (to_min(running), MachineState::Running, None),
        ]
    );

    // Telemetry warns ahead: vibration in the last minutes before the fault is
    // well above the device's normal level.
    let vibration = |from: f64, to: f64| -> f64 {
        let v: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Equipment(q)
                    if q.device_id == Scenario::FAULT_DEVICE
                        && q.kind == EquipmentKind::Telemetry
                        && (from..to).contains(&offset_min(&cfg, q.event_time)) =>
                {
                    q.vibration_mm_s
                }
                _ => None,
            })
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let f = to_min(fault);
    assert!(vibration(f - 3.0, f) > 2.0 * vibration(0.0, f - 12.0));
}

/// Units produced and net units sold of `sku` between two offsets (minutes).
fn produced_and_sold(
    events: &[Event],
    cfg: &SimConfig,
    sku: &str,
    from: f64,
    to: f64,
) -> (f64, f64) {
    let mut produced = 0.0;
    let mut sold = 0.0;
    for e in events {
        if !(from..to).contains(&offset_min(cfg, e.event_time())) {
            continue;
        }
        match e {
            Event::Production(p) if p.sku == sku => produced += p.quantity_good as f64,
            Event::Sales(s) if s.sku == sku => {
                let sign = if s.kind == SaleKind::Order { 1.0 } else { -1.0 };
                sold += sign * s.quantity as f64;
            }
            _ => {}
        }
    }
    (produced, sold)
}

#[test]
fn mismatch_scenario_makes_produced_and_sold_diverge_then_recover() {
    let mismatch = config(Scenario::Mismatch, 9);
    let normal = config(Scenario::Normal, 9);
    let m_events = events_until(mismatch.clone(), 180);
    let n_events = events_until(normal.clone(), 180);
    let (over, _) = Scenario::MISMATCH_OVER;
    let (short, _) = Scenario::MISMATCH_SHORT;
    let ratio = |events: &[Event], cfg: &SimConfig, sku: &str, from: f64, to: f64| {
        let (p, s) = produced_and_sold(events, cfg, sku, from, to);
        p / s
    };
    // Inside the window, well past the first planning cycle.
    let over_ratio = ratio(&m_events, &mismatch, over, 30.0, 75.0);
    let short_ratio = ratio(&m_events, &mismatch, short, 30.0, 75.0);
    assert!(over_ratio > 1.6, "{over} produced/sold = {over_ratio}");
    assert!(short_ratio < 0.5, "{short} produced/sold = {short_ratio}");
    for sku in [over, short] {
        let normal_ratio = ratio(&n_events, &normal, sku, 30.0, 75.0);
        assert!(
            (0.75..1.3).contains(&normal_ratio),
            "normal {sku}: {normal_ratio}"
        );
        let recovered = ratio(&m_events, &mismatch, sku, 120.0, 180.0);
        assert!(
            (0.75..1.3).contains(&recovered),
            "recovered {sku}: {recovered}"
        );
    }
}

#[test]
fn imperfections_come_in_the_fractions_asked_for() {
    let cfg = SimConfig {
        out_of_order: 0.10,
        late: 0.05,
        malformed: 0.20,
        max_out_of_order: Duration::from_secs(5),
        ..config(Scenario::Normal, 21)
    };
    let n = 60_000;
    let records: Vec<SimRecord> = Simulator::new(cfg.clone()).take(n).collect();
    let frac = |count: usize| count as f64 / n as f64;
    let count_timing = |t: Timing| records.iter().filter(|r| r.timing == t).count();
    assert!((frac(count_timing(Timing::OutOfOrder)) - 0.10).abs() < 0.01);
    assert!((frac(count_timing(Timing::Late)) - 0.05).abs() < 0.01);
    for kind in MalformedKind::ALL {
        let count = records.iter().filter(|r| r.malformed == Some(kind)).count();
        assert!(
            (frac(count) - 0.05).abs() < 0.007,
            "{kind}: {}",
            frac(count)
        );
    }

    for r in &records {
        let parsed = match r.stream {
            Stream::Sales => serde_json::from_slice::<SalesEvent>(&r.payload).map(|_| ()),
            Stream::Production => serde_json::from_slice::<ProductionEvent>(&r.payload).map(|_| ()),
            Stream::Logistics => serde_json::from_slice::<LogisticsEvent>(&r.payload).map(|_| ()),
            Stream::Equipment => serde_json::from_slice::<EquipmentEvent>(&r.payload).map(|_| ()),
        };
        match r.malformed {
            None => assert!(parsed.is_ok()),
            Some(kind) => {
                let err = parsed
                    .expect_err("a malformed record must not parse")
                    .to_string();
                let expected = match kind {
                    MalformedKind::InvalidJson => {
                        serde_json::from_slice::<serde_json::Value>(&r.payload).is_err()
                    }
                    MalformedKind::WrongType => err.contains("invalid type"),
                    MalformedKind::MissingField => err.contains("missing field"),
                    MalformedKind::BadTimestamp => err.contains("RFC 3339"),
                };
                assert!(
                    expected,
                    "{kind}: {err}: {}",
                    String::from_utf8_lossy(&r.payload)
                );
            }
        }
    }

    // Out-of-order records stay within the bound of the newest time seen so
    // far; late ones fall beyond it.
    let bound = cfg.max_out_of_order.as_millis() as i64;
    let mut newest = i64::MIN;
    let in_order_times: Vec<Option<i64>> = records
        .iter()
        .map(|r| match (&r.event, r.timing) {
            (Some(e), Timing::InOrder) => Some(e.event_time().timestamp_millis()),
            _ => None,
        })
        .collect();
    for (i, r) in records.iter().enumerate() {
        let Some(event) = &r.event else { continue };
        let t = event.event_time().timestamp_millis();
        match r.timing {
            Timing::InOrder => newest = newest.max(t),
            Timing::OutOfOrder => assert!(t >= newest - bound, "record {i}"),
            Timing::Late => {
                let soon = in_order_times[i..(i + 100).min(n)]
                    .iter()
                    .flatten()
                    .max()
                    .copied()
                    .unwrap_or(newest);
                assert!(t < soon.max(newest) - bound, "record {i} is not late");
            }
        }
    }
}

#[test]
fn invalid_fractions_are_refused_with_the_option_named() {
    let err = SimConfig {
        malformed: 1.5,
        ..SimConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        err.contains("--malformed") && err.contains("between 0 and 1"),
        "{err}"
    );
    let err = SimConfig {
        late: 0.7,
        out_of_order: 0.6,
        ..SimConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(err.contains("--late"), "{err}");
}
