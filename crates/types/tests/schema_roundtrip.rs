//! Every stream's serde type and Arrow schema describe the same record: an event
//! serialized to JSON, decoded by arrow-json against the schema, written back
//! to JSON and parsed again is the event we started with.

use arrow::array::RecordBatch;
use arrow_json::{ArrayWriter, ReaderBuilder};
use chrono::{DateTime, Utc};
use kpiflow_types::time::parse_rfc3339;
use kpiflow_types::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn t(text: &str) -> DateTime<Utc> {
    parse_rfc3339(text).unwrap()
}

fn decode(stream: Stream, json: &[u8]) -> RecordBatch {
    let mut decoder = ReaderBuilder::new(stream.schema()).build_decoder().unwrap();
    decoder.decode(json).unwrap();
    decoder.flush().unwrap().expect("one row")
}

fn round_trip<E>(stream: Stream, event: &E)
where
    E: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_vec(event).unwrap();

    // The JSON object has exactly the schema's fields, in order, bar nulls.
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
        .collect();
    let schema = stream.schema();
    let fields: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| keys.contains(name))
        .collect();
    assert_eq!(keys, fields, "{stream}: JSON keys vs schema fields");
    for field in schema.fields() {
        assert!(
            field.is_nullable() || keys.contains(&field.name().as_str()),
            "{stream}: required field {} missing from JSON",
            field.name()
        );
    }

    let batch = decode(stream, &json);
    assert_eq!(batch.schema(), schema);
    assert_eq!(batch.num_rows(), 1);

    let mut writer = ArrayWriter::new(Vec::new());
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let back: Vec<E> = serde_json::from_slice(&writer.into_inner()).unwrap();
    assert_eq!(back, vec![serde_json::from_slice::<E>(&json).unwrap()]);
    assert_eq!(
        &back[0], event,
        "{stream}: event changed on the way through Arrow"
    );
}

#[test]
fn sales_round_trips_through_arrow() {
    round_trip(
        Stream::Sales,
        &SalesEvent {
            event_time: t("2026-11-11T10:00:00.123Z"),
            order_id: "O-1".into(),
            channel: Channel::Online,
            region: "east".into(),
            store_id: "ST-ONLINE".into(),
            sku: "SKU-001".into(),
            quantity: 3,
            unit_price: 19.9,
            amount: 59.7,
            kind: SaleKind::Order,
        },
    );
}

#[test]
fn production_round_trips_through_arrow() {
    round_trip(
        Stream::Production,
        &ProductionEvent {
            event_time: t("2026-11-11T10:00:05Z"),
            plant_id: "P1".into(),
            line_id: "P1-L1".into(),
            work_order_id: "WO-P1-L1-0001".into(),
            sku: "SKU-001".into(),
            quantity_good: 120,
            quantity_scrap: 2,
            shift: "day".into(),
        },
    );
}

#[test]
fn logistics_round_trips_through_arrow() {
    round_trip(
        Stream::Logistics,
        &LogisticsEvent {
            event_time: t("2026-11-11T10:00:00Z"),
            shipment_id: "SH-1".into(),
            warehouse_id: "WH-EAST".into(),
            destination_region: "east".into(),
            sku: "SKU-002".into(),
            quantity: 40,
            carrier: "SwiftPost".into(),
            status: ShipmentStatus::Delayed,
            promised_time: t("2026-11-11T14:00:00Z"),
        },
    );
}

#[test]
fn equipment_round_trips_through_arrow_with_nulls() {
    round_trip(
        Stream::Equipment,
        &EquipmentEvent {
            event_time: t("2026-11-11T10:00:00.5Z"),
            device_id: "D-P1-L1-1".into(),
            plant_id: "P1".into(),
            line_id: "P1-L1".into(),
            kind: EquipmentKind::Telemetry,
            state: MachineState::Running,
            temperature_c: Some(61.25),
            vibration_mm_s: Some(2.5),
            fault_code: None,
            inspector: None,
            inspection: None,
        },
    );
    round_trip(
        Stream::Equipment,
        &EquipmentEvent {
            event_time: t("2026-11-11T10:00:00Z"),
            device_id: "D-P1-L1-1".into(),
            plant_id: "P1".into(),
            line_id: "P1-L1".into(),
            kind: EquipmentKind::Inspection,
            state: MachineState::Idle,
            temperature_c: None,
            vibration_mm_s: None,
            fault_code: None,
            inspector: Some("INS-07".into()),
            inspection: Some(Inspection::Disinfection),
        },
    );
}

#[test]
fn event_time_as_epoch_ms_and_rfc3339_decode_to_the_same_row() {
    let text = br#"{"event_time":"2026-11-11T10:00:00.250Z","plant_id":"P1","line_id":"P1-L1","work_order_id":"W","sku":"S","quantity_good":1,"quantity_scrap":0,"shift":"day"}"#;
    let ms = t("2026-11-11T10:00:00.250Z").timestamp_millis();
    let number = format!(
        r#"{{"event_time":{ms},"plant_id":"P1","line_id":"P1-L1","work_order_id":"W","sku":"S","quantity_good":1,"quantity_scrap":0,"shift":"day"}}"#
    );
    assert_eq!(
        decode(Stream::Production, text),
        decode(Stream::Production, number.as_bytes())
    );
    let a: ProductionEvent = serde_json::from_slice(text).unwrap();
    let b: ProductionEvent = serde_json::from_str(&number).unwrap();
    assert_eq!(a, b);
}

#[test]
fn unknown_extra_fields_are_ignored_and_missing_required_ones_named() {
    let extra = br#"{"event_time":1,"plant_id":"P1","line_id":"L","work_order_id":"W","sku":"S","quantity_good":1,"quantity_scrap":0,"shift":"day","firmware":"2.1"}"#;
    assert!(serde_json::from_slice::<ProductionEvent>(extra).is_ok());
    let missing = br#"{"event_time":1,"plant_id":"P1","line_id":"L","work_order_id":"W","quantity_good":1,"quantity_scrap":0,"shift":"day"}"#;
    let err = serde_json::from_slice::<ProductionEvent>(missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `sku`"), "{err}");
}

#[test]
fn bad_event_time_is_rejected_with_the_expected_forms() {
    let bad = br#"{"event_time":"11/11/2026 10:00","plant_id":"P1","line_id":"L","work_order_id":"W","sku":"S","quantity_good":1,"quantity_scrap":0,"shift":"day"}"#;
    let err = serde_json::from_slice::<ProductionEvent>(bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("RFC 3339"), "{err}");
}

#[test]
fn schemas_carry_their_version_and_key_field() {
    for stream in Stream::ALL {
        let schema = stream.schema();
        assert_eq!(
            schema
                .metadata()
                .get(kpiflow_types::stream::SCHEMA_VERSION_KEY),
            Some(&kpiflow_types::stream::SCHEMA_VERSION.to_string())
        );
        assert!(schema.field_with_name(stream.key_field()).is_ok());
        assert_eq!(
            schema.field(0).data_type(),
            &kpiflow_types::stream::timestamp_ms()
        );
        assert_eq!(stream.name().parse::<Stream>().unwrap(), stream);
    }
    assert!("orders".parse::<Stream>().is_err());
}
