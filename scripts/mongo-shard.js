// Sharding and indexes for a Tessera database on a sharded MongoDB cluster.
//
// Run once against a mongos, as a user allowed to shard:
//     mongosh "mongodb://mongos.example:27017/admin" --file scripts/mongo-shard.js
// with TESSERA_DB set in the shell's environment (default "tessera").
//
// Shard keys (every Tessera document carries its key and every query filters on it):
//   regions       { _id: 1 }     the region id: one head document per region
//   region_cells  { region: 1 }  the region id: all cell versions of a region together
//   players       { _id: 1 }     the player id (hashed: ids are dense and sequential)
//   bans          { _id: 1 }     the player id (hashed, like players)
//   audit_log     { _id: 1 }     the record id (time-ordered text: ranged, so reads of
//                                the newest records go to few shards; low write rate)
//
// Not tested here: the test machines run a single-node MongoDB-wire server without
// sharding. The collections, keys and queries are the ones the tests exercise.

const dbName = (typeof process !== "undefined" && process.env.TESSERA_DB) || "tessera";

sh.enableSharding(dbName);

db.getSiblingDB(dbName).region_cells.createIndex({ region: 1, cell: 1 });

sh.shardCollection(`${dbName}.regions`, { _id: 1 });
sh.shardCollection(`${dbName}.region_cells`, { region: 1 });
sh.shardCollection(`${dbName}.players`, { _id: "hashed" });
sh.shardCollection(`${dbName}.bans`, { _id: "hashed" });
sh.shardCollection(`${dbName}.audit_log`, { _id: 1 });

// Production write concern: acknowledged writes must survive a primary failover.
// Set it in the node's URI rather than here: mongodb://.../?w=majority
print(`sharded ${dbName}: regions, region_cells, players, bans, audit_log`);
