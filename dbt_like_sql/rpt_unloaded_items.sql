-- rpt_unloaded_items: staged items of the window [lo, hi) that did not reach the target, with the stage
-- where they stopped and the last error the ledger recorded.
select
    i.source_id as item_id,
    i.ts,
    i.customer_id,
    i.conversation_id,
    case
        when ti.item_id is null then 'split'
        when l.state is null then 'load'
        else 'load: ' || l.state
    end as stage,
    l.last_error as reason
from stg_conversation_items i
left join ticket_items ti
    on ti.item_id = i.source_id
left join ledger l
    on l.source_key in ('message:' || i.source_id, 'message:' || i.source_id || '#1')
where i.ts >= :lo and i.ts < :hi
    and (ti.item_id is null or l.state is null or l.state <> 'done')
order by i.ts, i.source_id
