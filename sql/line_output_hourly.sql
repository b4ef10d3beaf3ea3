-- Production output per line per hour: good and scrapped units, scrap rate,
-- and the share of the line's rated hourly capacity reached.
SELECT
    p.plant_id,
    p.line_id,
    l.name AS line_name,
    sum(p.quantity_good) AS good,
    sum(p.quantity_scrap) AS scrap,
    CAST(sum(p.quantity_scrap) AS DOUBLE) / nullif(sum(p.quantity_good + p.quantity_scrap), 0) AS scrap_rate,
    CAST(sum(p.quantity_good) AS DOUBLE) / max(l.capacity_per_hour) AS capacity_used
FROM production p
JOIN lines l ON p.line_id = l.line_id
GROUP BY tumble(p.event_time, INTERVAL '1 hour'), p.plant_id, p.line_id, l.name
