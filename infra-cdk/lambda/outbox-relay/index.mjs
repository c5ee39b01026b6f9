// The outbox relay on AWS: the order table's stream brings every new outbox item
// (pk OUTBOX#<order>, written in the batch of the change it reports; the event source
// mapping's filter passes only those), this function puts its events on the oms bus
// (one entry per CloudEvent: source "oms", detail-type its type, detail the event) and
// then deletes the item. A failed batch is thrown, so Lambda retries it: at least once,
// consumers deduplicate by the CloudEvent's id (docs/events.md).
import { DynamoDBClient, DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { unmarshall } from '@aws-sdk/util-dynamodb';

const dynamodb = new DynamoDBClient({});
const eventbridge = new EventBridgeClient({});
const BUS = process.env.EVENT_BUS_NAME;
const TABLE = process.env.TABLE_NAME;
// PutEvents takes at most 10 entries a call.
const PUT_EVENTS_MAX = 10;

export async function handler(event) {
  for (const record of event.Records ?? []) {
    const image = record.dynamodb?.NewImage;
    if (record.eventName !== 'INSERT' || !image) continue;
    const item = unmarshall(image);
    const entries = (item.events ?? []).map((e) => ({
      EventBusName: BUS,
      Source: e.source,
      DetailType: e.type,
      Time: new Date(e.time),
      Resources: [],
      Detail: JSON.stringify(e),
    }));
    for (let i = 0; i < entries.length; i += PUT_EVENTS_MAX) {
      const out = await eventbridge.send(new PutEventsCommand({ Entries: entries.slice(i, i + PUT_EVENTS_MAX) }));
      if (out.FailedEntryCount) {
        throw new Error(`PutEvents failed ${out.FailedEntryCount} entries of outbox item ${item.pk}/${item.sk}`);
      }
    }
    await dynamodb.send(
      new DeleteItemCommand({ TableName: TABLE, Key: { pk: { S: item.pk }, sk: { S: item.sk } } }),
    );
  }
}
