-- Equipment health per line per hour: availability (share of telemetry
-- samples with the machine running), faults reported, and the peak
-- temperature and vibration seen.
SELECT
    plant_id,
    line_id,
    CAST(count(*) FILTER (WHERE kind = 'telemetry' AND state = 'running') AS DOUBLE)
        / nullif(count(*) FILTER (WHERE kind = 'telemetry'), 0) AS availability,
    count(*) FILTER (WHERE kind = 'state' AND state = 'fault') AS faults,
    count(DISTINCT fault_code) AS fault_codes,
    max(temperature_c) AS max_temperature_c,
    max(vibration_mm_s) AS max_vibration_mm_s
FROM equipment
GROUP BY tumble(event_time, INTERVAL '1 hour'), plant_id, line_id
