-- rpt_ticket_sizes: every ticket holding at least one item of the window [lo, hi), with its
-- size in items (the whole ticket, not only the window's part) and its surviving customer.
select
    t.ticket_id,
    t.customer_id,
    t.item_count
from tickets t
where exists (
    select 1
    from ticket_items ti
    where ti.ticket_id = t.ticket_id
        and ti.ts >= :lo and ti.ts < :hi
)
order by t.first_ts, t.ticket_id
