-- Logistics per carrier per hour: deliveries, how many arrived by the
-- promised time, delays reported, and the on-time rate.
SELECT
    l.carrier,
    c.carrier AS carrier_code,
    c.sla_hours,
    count(*) FILTER (WHERE l.status = 'delivered') AS delivered,
    count(*) FILTER (WHERE l.status = 'delivered' AND l.event_time <= l.promised_time) AS on_time,
    count(*) FILTER (WHERE l.status = 'delayed') AS delayed,
    CAST(count(*) FILTER (WHERE l.status = 'delivered' AND l.event_time <= l.promised_time) AS DOUBLE)
        / nullif(count(*) FILTER (WHERE l.status = 'delivered'), 0) AS on_time_rate
FROM logistics l
JOIN carriers c ON l.carrier = c.name
GROUP BY tumble(l.event_time, INTERVAL '1 hour'), l.carrier, c.carrier, c.sla_hours
