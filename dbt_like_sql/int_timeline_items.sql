-- int_timeline_items: every staged item of one customer (merged profiles included, through
-- customer_lookups) or of one conversation, as the splitter sees it (int_unassigned_items'
-- columns, plus the kind), for split previews.
-- Pass customer_id or conversation_id; the other is null.
select
    i.source_id,
    i.ts,
    i.channel,
    i.split_change,
    coalesce(i.conversation_id, 'activity:' || coalesce(l.surviving_id, i.customer_id)) as conversation_key,
    coalesce(l.surviving_id, i.customer_id) as surviving_id,
    i.source_kind as kind
from stg_conversation_items i
left join customer_lookups l
    on l.customer_id = i.customer_id
where (cast(:customer_id as varchar(64)) is null
        or coalesce(l.surviving_id, i.customer_id) = :customer_id
        or i.customer_id = :customer_id)
    and (cast(:conversation_id as varchar(64)) is null or i.conversation_id = :conversation_id)
order by conversation_key, i.ts, i.source_id
