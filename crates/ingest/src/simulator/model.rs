//! The factory's dynamics, one simulated second at a time: orders arriving
//! with the daily curve, a production plan that follows sales with a lag,
//! lines that stop on faults until maintenance, devices reporting telemetry,
//! inspection scans, and shipments moving through their statuses.
//!
//! All randomness comes from one seeded generator, drawn in a fixed order, so
//! a seed and a scenario always give the same events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use chrono::{DateTime, Utc};
use kpiflow_types::{
    Channel, EquipmentEvent, EquipmentKind, Inspection, LogisticsEvent, MachineState,
    ProductionEvent, SaleKind, SalesEvent, ShipmentStatus, Stream,
};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp, Poisson};

use super::factory::Factory;
use super::scenario::{Scenario, seasonality, shift};

const STEP_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Production lines report their output this often.
const REPORT_EVERY_MS: i64 = 5_000;
/// Devices send telemetry this often.
const TELEMETRY_EVERY_MS: i64 = 5_000;
/// The plan is revised from observed sales this often...
const PLANNING_CYCLE_MS: i64 = 15 * MINUTE_MS;
/// ...moving this far towards what sold in the last cycle, so it lags sales.
const PLAN_SMOOTHING: f64 = 0.5;
/// Mean time between random faults of one line.
const LINE_MTBF_MS: f64 = 16.0 * HOUR_MS as f64;
/// Telemetry shows rising vibration and heat this long before a fault.
const FAULT_PRECURSOR_MS: i64 = 10 * MINUTE_MS;
/// Mean time between inspection scans of one device.
const INSPECTION_MEAN_MS: f64 = 2.0 * HOUR_MS as f64;
/// Shipments leaving the warehouses per second at seasonality 1.
const SHIPMENTS_PER_S: f64 = 0.8;
/// Share of orders per channel: online, retail, dealer.
const CHANNEL_SHARE: [f64; 3] = [0.55, 0.30, 0.15];
/// Share of shipments per destination region, in warehouse order.
const REGION_SHARE: [f64; 4] = [0.35, 0.25, 0.25, 0.15];
const RETURN_RATE: f64 = 0.03;
const PEAK_DISCOUNT: f64 = 0.8;
const INSPECTORS: usize = 8;

/// One event of any stream, as the simulator made it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Sales(SalesEvent),
    Production(ProductionEvent),
    Logistics(LogisticsEvent),
    Equipment(EquipmentEvent),
}

impl Event {
    /// The stream (topic) the event belongs to.
    pub fn stream(&self) -> Stream {
        match self {
            Event::Sales(_) => Stream::Sales,
            Event::Production(_) => Stream::Production,
            Event::Logistics(_) => Stream::Logistics,
            Event::Equipment(_) => Stream::Equipment,
        }
    }

    /// The Kafka message key: SKU, shipment or device, as DESIGN.md says.
    pub fn key(&self) -> &str {
        match self {
            Event::Sales(e) => &e.sku,
            Event::Production(e) => &e.sku,
            Event::Logistics(e) => &e.shipment_id,
            Event::Equipment(e) => &e.device_id,
        }
    }

    /// The event's time.
    pub fn event_time(&self) -> DateTime<Utc> {
        match self {
            Event::Sales(e) => e.event_time,
            Event::Production(e) => e.event_time,
            Event::Logistics(e) => e.event_time,
            Event::Equipment(e) => e.event_time,
        }
    }

    /// Moves every timestamp of the event by `delta_ms`.
    pub fn shift_times(&mut self, delta_ms: i64) {
        let d = chrono::Duration::milliseconds(delta_ms);
        match self {
            Event::Sales(e) => e.event_time += d,
            Event::Production(e) => e.event_time += d,
            Event::Logistics(e) => {
                e.event_time += d;
                e.promised_time += d;
            }
            Event::Equipment(e) => e.event_time += d,
        }
    }

    /// Sets the event time alone (for out-of-order and late displacement).
    pub fn set_event_time(&mut self, t: DateTime<Utc>) {
        match self {
            Event::Sales(e) => e.event_time = t,
            Event::Production(e) => e.event_time = t,
            Event::Logistics(e) => e.event_time = t,
            Event::Equipment(e) => e.event_time = t,
        }
    }

    /// The event as JSON, fields in schema order.
    pub fn to_json(&self) -> Vec<u8> {
        let result = match self {
            Event::Sales(e) => serde_json::to_vec(e),
            Event::Production(e) => serde_json::to_vec(e),
            Event::Logistics(e) => serde_json::to_vec(e),
            Event::Equipment(e) => serde_json::to_vec(e),
        };
        // These types hold only strings, numbers and enums: serializing cannot fail.
        result.expect("event types always serialize")
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_ms: i64,
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LineStatus {
    Running,
    /// Stopped; `device` is the index of the device that failed.
    Fault {
        device: usize,
    },
    Maintenance {
        device: usize,
    },
}

struct LineState {
    /// Indices into `Factory::skus` that this line makes.
    skus: Vec<usize>,
    /// Units planned but not yet reported, per entry of `skus`.
    owed: Vec<f64>,
    status: LineStatus,
    next_report_ms: i64,
    /// The next random fault, scheduled ahead so telemetry can show its precursor.
    next_fault_ms: i64,
    fault_device: usize,
    scrap_rate: f64,
    work_orders: u64,
    /// Lines making the same category, which split its plan evenly.
    sharing: f64,
}

struct DeviceState {
    line: usize,
    next_telemetry_ms: i64,
    next_inspection_ms: i64,
    base_temperature: f64,
}

/// A line stop planned for a moment: fault, then maintenance, then running.
#[derive(Debug, Clone, Copy)]
struct Stop {
    line: usize,
    device: usize,
    fault_ms: i64,
    maintenance_ms: i64,
    running_ms: i64,
    code: &'static str,
}

/// The factory's state and its generator.
pub struct Model {
    factory: Factory,
    scenario: Scenario,
    rng: ChaCha8Rng,
    start_ms: i64,
    now_ms: i64,
    /// Events made for a time not yet reached (shipments in transit, ...),
    /// bounded by rate × the longest transit time.
    pending: BinaryHeap<Reverse<(Due, usize)>>,
    slots: Vec<Option<Event>>,
    free_slots: Vec<usize>,
    seq: u64,
    ready: VecDeque<Event>,
    sku_pick: WeightedIndex<f64>,
    channel_pick: WeightedIndex<f64>,
    region_pick: WeightedIndex<f64>,
    stores_by_channel: [Vec<usize>; 3],
    /// Net units sold per SKU in the current planning cycle.
    sold: Vec<f64>,
    /// Smoothed sales rate per SKU (units/s): the basis of the plan.
    plan_rate: Vec<f64>,
    next_plan_ms: i64,
    lines: Vec<LineState>,
    devices: Vec<DeviceState>,
    stops: Vec<Stop>,
    orders: u64,
    shipments: u64,
    orders_per_s: f64,
}

impl Model {
    pub fn new(factory: Factory, scenario: Scenario, rng: ChaCha8Rng, start_ms: i64) -> Model {
        let weights: Vec<f64> = factory.skus.iter().map(|s| s.daily_demand).collect();
        let sku_pick = WeightedIndex::new(&weights).expect("skus.csv has positive demand");
        let mut stores_by_channel: [Vec<usize>; 3] = Default::default();
        for (i, store) in factory.stores.iter().enumerate() {
            let c = Channel::ALL
                .iter()
                .position(|c| c.as_str() == store.channel)
                .expect("stores.csv channels are checked by tests");
            stores_by_channel[c].push(i);
        }
        let total_daily: f64 = weights.iter().sum();
        let season = seasonality(start_ms);
        let plan_rate = weights.iter().map(|d| d / 86_400.0 * season).collect();
        let lines = factory
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let skus: Vec<usize> = (0..factory.skus.len())
                    .filter(|&s| factory.skus[s].category == line.category)
                    .collect();
                LineState {
                    owed: vec![0.0; skus.len()],
                    skus,
                    status: LineStatus::Running,
                    next_report_ms: start_ms + (i as i64 * 617) % REPORT_EVERY_MS,
                    next_fault_ms: i64::MAX,
                    fault_device: 0,
                    scrap_rate: 0.01 + 0.004 * (i % 4) as f64,
                    work_orders: 0,
                    sharing: factory
                        .lines
                        .iter()
                        .filter(|other| other.category == line.category)
                        .count() as f64,
                }
            })
            .collect();
        let devices = factory
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceState {
                line: factory
                    .lines
                    .iter()
                    .position(|l| l.line_id == d.line_id)
                    .expect("devices.csv lines are checked by tests"),
                next_telemetry_ms: start_ms + (i as i64 * 211) % TELEMETRY_EVERY_MS,
                next_inspection_ms: i64::MAX,
                base_temperature: 35.0 + (i % 5) as f64 * 6.0,
            })
            .collect();
        // Mean units per order: retail and online buy 1–3, dealers 2–10.
        let mean_units = (CHANNEL_SHARE[0] + CHANNEL_SHARE[1]) * 1.4 + CHANNEL_SHARE[2] * 6.0;
        let mut model = Model {
            sku_pick,
            channel_pick: WeightedIndex::new(CHANNEL_SHARE).expect("constant weights"),
            region_pick: WeightedIndex::new(&REGION_SHARE[..factory.warehouses.len().min(4)])
                .expect("constant weights"),
            stores_by_channel,
            sold: vec![0.0; factory.skus.len()],
            plan_rate,
            next_plan_ms: start_ms + PLANNING_CYCLE_MS,
            lines,
            devices,
            stops: Vec::new(),
            orders: 0,
            shipments: 0,
            orders_per_s: total_daily / 86_400.0 / mean_units,
            factory,
            scenario,
            rng,
            start_ms,
            now_ms: start_ms,
            pending: BinaryHeap::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            seq: 0,
            ready: VecDeque::new(),
        };
        model.schedule_initial_stops();
        for d in 0..model.devices.len() {
            model.devices[d].next_inspection_ms = start_ms + model.exp_ms(INSPECTION_MEAN_MS);
        }
        model
    }

    /// The next event in event-time order.
    pub fn next_event(&mut self) -> Event {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            self.step();
        }
    }

    fn exp_ms(&mut self, mean_ms: f64) -> i64 {
        let exp = Exp::new(1.0 / mean_ms).expect("positive mean");
        exp.sample(&mut self.rng) as i64
    }

    fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        Poisson::new(mean)
            .expect("positive mean")
            .sample(&mut self.rng) as u64
    }

    fn schedule(&mut self, at_ms: i64, event: Event) {
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.pending.push(Reverse((
            Due {
                at_ms,
                seq: self.seq,
            },
            slot,
        )));
    }

    fn schedule_initial_stops(&mut self) {
        let scripted = if self.scenario == Scenario::Fault {
            let (fault, maintenance, running) = Scenario::FAULT_TIMES_MS;
            let line = self
                .factory
                .lines
                .iter()
                .position(|l| l.line_id == Scenario::FAULT_LINE);
            let device = self
                .factory
                .devices
                .iter()
                .position(|d| d.device_id == Scenario::FAULT_DEVICE);
            line.zip(device).map(|(line, device)| Stop {
                line,
                device,
                fault_ms: self.start_ms + fault,
                maintenance_ms: self.start_ms + maintenance,
                running_ms: self.start_ms + running,
                code: "E-HYD-PRESSURE",
            })
        } else {
            None
        };
        for line in 0..self.lines.len() {
            match scripted {
                Some(stop) if stop.line == line => {
                    self.lines[line].next_fault_ms = stop.fault_ms;
                    self.lines[line].fault_device = stop.device;
                    self.stops.push(stop);
                }
                _ => self.plan_random_fault(line, self.start_ms),
            }
        }
    }

    fn plan_random_fault(&mut self, line: usize, after_ms: i64) {
        let at = after_ms + self.exp_ms(LINE_MTBF_MS);
        let candidates: Vec<usize> = (0..self.devices.len())
            .filter(|&d| self.devices[d].line == line)
            .collect();
        let device = candidates[self.rng.random_range(0..candidates.len())];
        let repair_wait = self.rng.random_range(5..20) * MINUTE_MS;
        let repair = self.rng.random_range(10..25) * MINUTE_MS;
        const CODES: [&str; 4] = ["E-OVERHEAT", "E-JAM", "E-VIBRATION", "E-SENSOR"];
        let code = CODES[self.rng.random_range(0..CODES.len())];
        self.lines[line].next_fault_ms = at;
        self.lines[line].fault_device = device;
        self.stops.push(Stop {
            line,
            device,
            fault_ms: at,
            maintenance_ms: at + repair_wait,
            running_ms: at + repair_wait + repair,
            code,
        });
    }

    /// Makes the events of one simulated second and moves those due into `ready`.
    fn step(&mut self) {
        let t0 = self.now_ms;
        let t1 = t0 + STEP_MS;
        let offset = t0 - self.start_ms;
        let volume = seasonality(t0) * self.scenario.sales_factor(offset);

        self.make_sales(t0, volume);
        self.make_shipments(t0, volume);
        self.apply_stops(t0, t1);
        self.plan(t0);
        self.make_production(t0, t1);
        self.make_equipment(t1);

        self.now_ms = t1;
        while let Some(Reverse((due, _))) = self.pending.peek() {
            if due.at_ms >= t1 {
                break;
            }
            let Some(Reverse((_, slot))) = self.pending.pop() else {
                break;
            };
            if let Some(event) = self.slots[slot].take() {
                self.ready.push_back(event);
            }
            self.free_slots.push(slot);
        }
    }

    fn time(&self, ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("simulated time within chrono's range")
    }

    fn make_sales(&mut self, t0: i64, volume: f64) {
        let offset = t0 - self.start_ms;
        let in_peak = self.scenario.sales_factor(offset) > 1.0;
        for _ in 0..self.poisson(self.orders_per_s * volume) {
            let at = t0 + self.rng.random_range(0..STEP_MS);
            let sku = self.sku_pick.sample(&mut self.rng);
            let channel = self.channel_pick.sample(&mut self.rng);
            let stores = &self.stores_by_channel[channel];
            let store = stores[self.rng.random_range(0..stores.len())];
            let quantity: i64 = if Channel::ALL[channel] == Channel::Dealer {
                self.rng.random_range(2..=10)
            } else {
                match self.rng.random::<f64>() {
                    p if p < 0.7 => 1,
                    p if p < 0.9 => 2,
                    _ => 3,
                }
            };
            let kind = if self.rng.random::<f64>() < RETURN_RATE {
                SaleKind::Return
            } else {
                SaleKind::Order
            };
            let list_price = self.factory.skus[sku].unit_price;
            let unit_price = if in_peak {
                (list_price * PEAK_DISCOUNT * 100.0).round() / 100.0
            } else {
                list_price
            };
            self.orders += 1;
            let net = if kind == SaleKind::Order { 1.0 } else { -1.0 };
            self.sold[sku] += net * quantity as f64;
            let store = &self.factory.stores[store];
            let event = SalesEvent {
                event_time: self.time(at),
                order_id: format!("SO-{:010}", self.orders),
                channel: Channel::ALL[channel],
                region: store.region.clone(),
                store_id: store.store_id.clone(),
                sku: self.factory.skus[sku].sku.clone(),
                quantity,
                unit_price,
                amount: (unit_price * quantity as f64 * 100.0).round() / 100.0,
                kind,
            };
            self.schedule(at, Event::Sales(event));
        }
    }

    fn make_shipments(&mut self, t0: i64, volume: f64) {
        let offset = t0 - self.start_ms;
        let delay_factor = self.scenario.delay_factor(offset);
        for _ in 0..self.poisson(SHIPMENTS_PER_S * volume.min(3.0)) {
            let picked = t0 + self.rng.random_range(0..STEP_MS);
            let sku = self.sku_pick.sample(&mut self.rng);
            let region = self.region_pick.sample(&mut self.rng);
            let warehouse = if self.rng.random::<f64>() < 0.85 {
                region
            } else {
                self.rng.random_range(0..self.factory.warehouses.len())
            };
            let carrier = self.rng.random_range(0..self.factory.carriers.len());
            let quantity = self.rng.random_range(10..=200);
            let sla_ms = (self.factory.carriers[carrier].sla_hours * HOUR_MS as f64) as i64;
            let delayed =
                self.rng.random::<f64>() < self.factory.carriers[carrier].delay_rate * delay_factor;
            let shipped = picked + self.rng.random_range(10..40) * MINUTE_MS;
            let promised = picked + sla_ms;
            let delivered = if delayed {
                promised + self.rng.random_range(30..180) * MINUTE_MS
            } else {
                shipped + (promised - shipped) * self.rng.random_range(40..100) / 100
            };
            self.shipments += 1;
            let base = LogisticsEvent {
                event_time: self.time(picked),
                shipment_id: format!("SH-{:09}", self.shipments),
                warehouse_id: self.factory.warehouses[warehouse].warehouse_id.clone(),
                destination_region: self.factory.warehouses[region].region.clone(),
                sku: self.factory.skus[sku].sku.clone(),
                quantity,
                carrier: self.factory.carriers[carrier].name.clone(),
                status: ShipmentStatus::Picked,
                promised_time: self.time(promised),
            };
            let mut steps = vec![
                (picked, ShipmentStatus::Picked),
                (shipped, ShipmentStatus::Shipped),
            ];
            if delayed {
                steps.push((promised, ShipmentStatus::Delayed));
            }
            steps.push((delivered, ShipmentStatus::Delivered));
            for (at, status) in steps {
                let mut event = base.clone();
                event.event_time = self.time(at);
                event.status = status;
                self.schedule(at, Event::Logistics(event));
            }
        }
    }

    /// Starts and ends line stops due in this step, with the devices' state changes.
    fn apply_stops(&mut self, t0: i64, t1: i64) {
        let mut i = 0;
        while i < self.stops.len() {
            let stop = self.stops[i];
            let mut changes: Vec<(i64, LineStatus)> = Vec::new();
            for (at, status) in [
                (
                    stop.fault_ms,
                    LineStatus::Fault {
                        device: stop.device,
                    },
                ),
                (
                    stop.maintenance_ms,
                    LineStatus::Maintenance {
                        device: stop.device,
                    },
                ),
                (stop.running_ms, LineStatus::Running),
            ] {
                if (t0..t1).contains(&at) {
                    changes.push((at, status));
                }
            }
            for (at, status) in changes {
                self.set_line_status(stop.line, at, status, stop.code);
            }
            if stop.running_ms < t1 {
                self.stops.swap_remove(i);
                if self.lines[stop.line].next_fault_ms == stop.fault_ms {
                    self.plan_random_fault(stop.line, stop.running_ms);
                }
            } else {
                i += 1;
            }
        }
    }

    fn set_line_status(&mut self, line: usize, at: i64, status: LineStatus, code: &str) {
        if matches!(status, LineStatus::Fault { .. }) {
            // Planned output not made by now is lost, not made up after repair.
            self.lines[line].owed.iter_mut().for_each(|o| *o = 0.0);
        }
        self.lines[line].status = status;
        for d in 0..self.devices.len() {
            if self.devices[d].line != line {
                continue;
            }
            let (state, fault_code) = match status {
                LineStatus::Running => (MachineState::Running, None),
                LineStatus::Fault { device } if device == d => {
                    (MachineState::Fault, Some(code.to_owned()))
                }
                LineStatus::Maintenance { device } if device == d => {
                    (MachineState::Maintenance, None)
                }
                LineStatus::Fault { .. } | LineStatus::Maintenance { .. } => {
                    (MachineState::Idle, None)
                }
            };
            let event = self.equipment_event(d, at, EquipmentKind::State, state);
            let event = EquipmentEvent {
                fault_code,
                ..event
            };
            self.schedule(at, Event::Equipment(event));
        }
    }

    fn plan(&mut self, t0: i64) {
        if t0 < self.next_plan_ms {
            return;
        }
        let cycle_s = PLANNING_CYCLE_MS as f64 / 1000.0;
        for (rate, sold) in self.plan_rate.iter_mut().zip(self.sold.iter_mut()) {
            let observed = sold.max(0.0) / cycle_s;
            *rate += PLAN_SMOOTHING * (observed - *rate);
            *sold = 0.0;
        }
        self.next_plan_ms += PLANNING_CYCLE_MS;
    }

    fn make_production(&mut self, t0: i64, t1: i64) {
        let offset = t0 - self.start_ms;
        for l in 0..self.lines.len() {
            if self.lines[l].status != LineStatus::Running {
                while self.lines[l].next_report_ms < t1 {
                    self.lines[l].next_report_ms += REPORT_EVERY_MS;
                }
                continue;
            }
            let line = &self.factory.lines[l];
            let sharing = self.lines[l].sharing;
            let wanted: Vec<f64> = self.lines[l]
                .skus
                .iter()
                .map(|&s| {
                    self.plan_rate[s] * self.scenario.plan_factor(&self.factory.skus[s].sku, offset)
                        / sharing
                })
                .collect();
            let capacity = line.capacity_per_hour / 3600.0;
            let total: f64 = wanted.iter().sum();
            let scale = if total > capacity {
                capacity / total
            } else {
                1.0
            };
            let step_s = STEP_MS as f64 / 1000.0;
            for (owed, want) in self.lines[l].owed.iter_mut().zip(&wanted) {
                *owed += want * scale * step_s;
            }
            while self.lines[l].next_report_ms < t1 {
                let at = self.lines[l].next_report_ms;
                self.lines[l].next_report_ms += REPORT_EVERY_MS;
                self.report_output(l, at);
            }
        }
    }

    fn report_output(&mut self, l: usize, at: i64) {
        let state = &self.lines[l];
        let Some((k, owed)) = state
            .owed
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            return;
        };
        let made = owed.floor() as i64;
        if made <= 0 {
            return;
        }
        let mut scrap_rate = state.scrap_rate;
        if state.next_fault_ms - at < FAULT_PRECURSOR_MS {
            scrap_rate *= 4.0;
        }
        let scrap = ((made as f64) * scrap_rate * self.rng.random_range(0.5..1.5)).round() as i64;
        let sku = state.skus[k];
        let cycle = (at - self.start_ms) / PLANNING_CYCLE_MS;
        self.lines[l].owed[k] -= made as f64;
        self.lines[l].work_orders += 1;
        let line = &self.factory.lines[l];
        let sku_id = &self.factory.skus[sku].sku;
        let event = ProductionEvent {
            event_time: self.time(at),
            plant_id: line.plant_id.clone(),
            line_id: line.line_id.clone(),
            work_order_id: format!(
                "WO-{}-{}-{cycle:05}",
                line.line_id,
                sku_id.trim_start_matches("SKU-")
            ),
            sku: sku_id.clone(),
            quantity_good: made - scrap.min(made),
            quantity_scrap: scrap.min(made),
            shift: shift(at).to_owned(),
        };
        self.schedule(at, Event::Production(event));
    }

    fn device_state(&self, d: usize) -> MachineState {
        match self.lines[self.devices[d].line].status {
            LineStatus::Running => MachineState::Running,
            LineStatus::Fault { device } if device == d => MachineState::Fault,
            LineStatus::Maintenance { device } if device == d => MachineState::Maintenance,
            _ => MachineState::Idle,
        }
    }

    fn equipment_event(
        &self,
        d: usize,
        at: i64,
        kind: EquipmentKind,
        state: MachineState,
    ) -> EquipmentEvent {
        let device = &self.factory.devices[d];
        EquipmentEvent {
            event_time: self.time(at),
            device_id: device.device_id.clone(),
            plant_id: device.plant_id.clone(),
            line_id: device.line_id.clone(),
            kind,
            state,
            temperature_c: None,
            vibration_mm_s: None,
            fault_code: None,
            inspector: None,
            inspection: None,
        }
    }

    fn make_equipment(&mut self, t1: i64) {
        for d in 0..self.devices.len() {
            while self.devices[d].next_telemetry_ms < t1 {
                let at = self.devices[d].next_telemetry_ms;
                self.devices[d].next_telemetry_ms += TELEMETRY_EVERY_MS;
                let line = &self.lines[self.devices[d].line];
                let state = self.device_state(d);
                let running = state == MachineState::Running;
                // Heat and vibration climb over the minutes before this device fails.
                let to_fault = line.next_fault_ms - at;
                let precursor =
                    if line.fault_device == d && (0..FAULT_PRECURSOR_MS).contains(&to_fault) {
                        1.0 - to_fault as f64 / FAULT_PRECURSOR_MS as f64
                    } else {
                        0.0
                    };
                let base = self.devices[d].base_temperature;
                let temperature = if running { base + 8.0 } else { base - 5.0 }
                    + precursor * 25.0
                    + self.rng.random_range(-1.5..1.5);
                let vibration = if running { 2.2 } else { 0.3 }
                    + precursor * 9.0
                    + self.rng.random_range(-0.3..0.3);
                let mut event = self.equipment_event(d, at, EquipmentKind::Telemetry, state);
                event.temperature_c = Some((temperature * 10.0).round() / 10.0);
                event.vibration_mm_s = Some((vibration.max(0.0) * 100.0).round() / 100.0);
                self.schedule(at, Event::Equipment(event));
            }
            while self.devices[d].next_inspection_ms < t1 {
                let at = self.devices[d].next_inspection_ms;
                self.devices[d].next_inspection_ms =
                    at + self.exp_ms(INSPECTION_MEAN_MS).max(MINUTE_MS);
                let inspection = match self.rng.random::<f64>() {
                    p if p < 0.55 => Inspection::Disinfection,
                    p if p < 0.95 => Inspection::Safety,
                    _ => Inspection::None,
                };
                let inspector = format!("INS-{:02}", self.rng.random_range(1..=INSPECTORS));
                let state = self.device_state(d);
                let mut event = self.equipment_event(d, at, EquipmentKind::Inspection, state);
                event.inspector = Some(inspector);
                event.inspection = Some(inspection);
                self.schedule(at, Event::Equipment(event));
            }
        }
    }
}
