// Reads sensor-readings the way the reference sample's Node dashboard (node-dashboard/app.js)
// does: kafkajs, JSON.parse of each value, then reading.SensorId, reading.Temperature, ...
// Prints what its /api/readings would hold once `expected` readings are in (or on timeout).
// Usage: node reference_dashboard.js <bootstrap> <topic> <groupId> <expected> <timeoutMs>
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, groupId, expected, timeoutMs] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "reference-dashboard", brokers: bootstrap.split(","),
                          logLevel: process.env.KAFKAJS_DEBUG ? logLevel.INFO : logLevel.NOTHING });
const consumer = kafka.consumer({ groupId });
const sensors = {};
let seen = 0;

function finish(code) {
  process.stdout.write(JSON.stringify({ seen, sensors }) + "\n");
  process.exit(code);  // the broker forgets this member after its session timeout
}

(async () => {
  const timer = setTimeout(() => finish(2), Number(timeoutMs));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const reading = JSON.parse(message.value.toString());
      const entry = (sensors[reading.SensorId] ||= { history: [] });
      entry.latest = { sensorId: reading.SensorId, location: reading.Location,
                       temperature: reading.Temperature, humidity: reading.Humidity,
                       timestamp: reading.Timestamp };
      entry.history.push({ temperature: reading.Temperature, humidity: reading.Humidity,
                           timestamp: reading.Timestamp });
      seen += 1;
      if (seen >= Number(expected)) { clearTimeout(timer); finish(0); }
    },
  });
})().catch((err) => { process.stderr.write(String(err) + "\n"); finish(1); });
