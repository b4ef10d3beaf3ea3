-- QR-code inspections per device per day: how many, the last one's time,
-- inspector and kind.
SELECT
    device_id,
    line_id,
    count(*) AS inspections,
    max(event_time) AS last_inspection,
    last_value(inspector ORDER BY event_time) AS last_inspector,
    last_value(inspection ORDER BY event_time) AS last_kind
FROM equipment
WHERE kind = 'inspection'
GROUP BY date_bin(INTERVAL '1 day', event_time), device_id, line_id
