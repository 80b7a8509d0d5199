-- int_unassigned_items: staged conversation items of the window [lo, hi) that no ticket holds
-- yet, each with its timeline key (the Gladly conversation, or a per-customer activity timeline
-- for items outside any conversation) and its surviving customer (merged profiles resolved
-- through customer_lookups). Ordered by timeline, then time and id, so the splitter streams one
-- timeline at a time. The columns come from ix_stg_conversation_items_timeline alone (no row
-- lookups), and the first four are what the splitter reads per item: id, time, channel, and
-- `split_change` (what a status or topic change changed; null for other kinds).
select
    i.source_id,
    i.ts,
    i.channel,
    i.split_change,
    coalesce(i.conversation_id, 'activity:' || coalesce(l.surviving_id, i.customer_id)) as conversation_key,
    coalesce(l.surviving_id, i.customer_id) as surviving_id
from stg_conversation_items i
left join customer_lookups l
    on l.customer_id = i.customer_id
where i.ts >= :lo and i.ts < :hi
    and not exists (select 1 from ticket_items t where t.item_id = i.source_id)
order by conversation_key, i.ts, i.source_id
