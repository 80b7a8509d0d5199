-- rpt_items_not_in_tickets: staged items of the window [lo, hi) that are not in exactly one
-- ticket after splitting: in no ticket at all, or assigned to a ticket that does not exist.
-- (ticket_items is keyed by item id, so no item can be in two.)
select
    i.source_id as item_id,
    i.ts,
    i.customer_id,
    i.conversation_id,
    ti.ticket_id,
    case
        when ti.item_id is null then 'in no ticket'
        else 'assigned to a ticket that does not exist'
    end as reason
from stg_conversation_items i
left join ticket_items ti
    on ti.item_id = i.source_id
left join tickets t
    on t.ticket_id = ti.ticket_id
where i.ts >= :lo and i.ts < :hi
    and (ti.item_id is null or t.ticket_id is null)
order by i.ts, i.source_id
