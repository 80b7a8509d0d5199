-- int_unassigned_items: staged conversation items of the window [lo, hi) that no ticket holds
-- yet, each with its surviving customer (merged profiles resolved through customer_lookups) and
-- its timeline key (the Gladly conversation, or a per-customer activity timeline for items
-- outside any conversation). Ordered by timeline, then time and id, so the splitter can stream
-- one timeline at a time. The payload is only read for the kinds the splitting rules look into.
select
    i.source_id,
    coalesce(i.conversation_id, 'activity:' || coalesce(l.surviving_id, i.customer_id)) as conversation_key,
    coalesce(l.surviving_id, i.customer_id) as surviving_id,
    i.ts,
    i.kind,
    i.channel,
    case when i.kind in ('TOPIC_CHANGE', 'CONVERSATION_STATUS_CHANGE') then i.payload end as payload
from stg_conversation_items i
left join customer_lookups l
    on l.customer_id = i.customer_id
where i.ts >= :lo and i.ts < :hi
    and not exists (select 1 from ticket_items t where t.item_id = i.source_id)
order by conversation_key, i.ts, i.source_id
