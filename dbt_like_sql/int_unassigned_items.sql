-- int_unassigned_items: staged conversation items of the window [lo, hi) that no ticket holds
-- yet, each with its surviving customer (merged profiles resolved through customer_lookups).
select
    i.source_id,
    i.conversation_id,
    i.customer_id,
    i.ts,
    coalesce(l.surviving_id, i.customer_id) as surviving_id
from stg_conversation_items i
left join customer_lookups l
    on l.customer_id = i.customer_id
where i.ts >= :lo and i.ts < :hi
    and not exists (select 1 from ticket_items t where t.item_id = i.source_id)
order by i.ts, i.source_id
