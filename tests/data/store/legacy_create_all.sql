-- A livewatch database made by create_all before migrations; see make_legacy_db.py.
BEGIN TRANSACTION;
CREATE TABLE alerts (
	id VARCHAR(64) NOT NULL, 
	broadcast_id VARCHAR(64) NOT NULL, 
	stream_id VARCHAR(128), 
	category VARCHAR(32) NOT NULL, 
	code VARCHAR(16) NOT NULL, 
	rule_id VARCHAR(128) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	start_s FLOAT NOT NULL, 
	end_s FLOAT NOT NULL, 
	start_ts FLOAT, 
	text TEXT NOT NULL, 
	context TEXT NOT NULL, 
	law TEXT NOT NULL, 
	rules_version VARCHAR(64) NOT NULL, 
	evidence_dir TEXT, 
	evidence_status VARCHAR(16) NOT NULL, 
	payload JSON NOT NULL, 
	created_ts FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(broadcast_id) REFERENCES broadcasts (id)
);
INSERT INTO "alerts" VALUES('0123456789abcdef0123','room-1-20251124T160000Z-ab12','room-1','absolute_terms','A1','abs.lowest','high','speech',1.0,3.5,1764000001.125,'全网最低价','家人们 全网最低价','广告法第九条','r1','evidence/0123456789abcdef0123','done','{"alert_id": "0123456789abcdef0123", "text": "\u5168\u7f51\u6700\u4f4e\u4ef7", "score": 97.5}',1764000005.125);
CREATE TABLE broadcast_gaps (
	id INTEGER NOT NULL, 
	stream_id VARCHAR(128) NOT NULL, 
	start_ts FLOAT NOT NULL, 
	end_ts FLOAT, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE broadcasts (
	id VARCHAR(64) NOT NULL, 
	stream_id VARCHAR(128), 
	kind VARCHAR(16) NOT NULL, 
	source TEXT NOT NULL, 
	media_sha256 VARCHAR(64), 
	media_size INTEGER, 
	duration_s FLOAT, 
	started_ts FLOAT, 
	ended_ts FLOAT, 
	status VARCHAR(16) NOT NULL, 
	rules_version VARCHAR(64) NOT NULL, 
	error TEXT, 
	meta JSON NOT NULL, 
	created_ts FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "broadcasts" VALUES('room-1-20251124T160000Z-ab12','room-1','live','https://live.example/room-1',NULL,NULL,NULL,1764000000.125,NULL,'ended','r1',NULL,'{"asr": "base", "notes": ["\u7b2c\u4e00\u573a"]}',1764000000.125);
CREATE TABLE decisions (
	id INTEGER NOT NULL, 
	alert_id VARCHAR(64) NOT NULL, 
	decision VARCHAR(32) NOT NULL, 
	note TEXT NOT NULL, 
	reviewer VARCHAR(128) NOT NULL, 
	created_ts FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(alert_id) REFERENCES alerts (id)
);
INSERT INTO "decisions" VALUES(1,'0123456789abcdef0123','confirmed','属实','li',1764000060.125);
CREATE TABLE detections (
	id INTEGER NOT NULL, 
	alert_id VARCHAR(64) NOT NULL, 
	broadcast_id VARCHAR(64) NOT NULL, 
	rule_id VARCHAR(128) NOT NULL, 
	category VARCHAR(32) NOT NULL, 
	code VARCHAR(16) NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	start_s FLOAT NOT NULL, 
	end_s FLOAT NOT NULL, 
	matched TEXT NOT NULL, 
	text TEXT NOT NULL, 
	score FLOAT NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	details JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(alert_id) REFERENCES alerts (id)
);
INSERT INTO "detections" VALUES(1,'0123456789abcdef0123','room-1-20251124T160000Z-ab12','abs.lowest','absolute_terms','A1','high','speech',1.0,3.5,'最低价','全网最低价',97.5,'exact','{"utterance_index": 0}');
CREATE TABLE evidence_files (
	id INTEGER NOT NULL, 
	alert_id VARCHAR(64) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (alert_id, name), 
	FOREIGN KEY(alert_id) REFERENCES alerts (id)
);
INSERT INTO "evidence_files" VALUES(1,'0123456789abcdef0123','clip.mp4','clip','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',2048);
CREATE TABLE media_segments (
	id INTEGER NOT NULL, 
	broadcast_id VARCHAR(64) NOT NULL, 
	seq INTEGER NOT NULL, 
	path TEXT NOT NULL, 
	start_s FLOAT NOT NULL, 
	duration_s FLOAT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	pinned BOOLEAN NOT NULL, 
	deleted BOOLEAN NOT NULL, 
	size INTEGER NOT NULL, 
	created_ts FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (broadcast_id, seq), 
	FOREIGN KEY(broadcast_id) REFERENCES broadcasts (id)
);
INSERT INTO "media_segments" VALUES(1,'room-1-20251124T160000Z-ab12',0,'seg_00000.ts',0.0,4.0,'analyzed',0,0,123456,1764000000.125);
CREATE TABLE price_claims (
	id INTEGER NOT NULL, 
	broadcast_id VARCHAR(64) NOT NULL, 
	stream_id VARCHAR(128), 
	source VARCHAR(16) NOT NULL, 
	start_s FLOAT NOT NULL, 
	end_s FLOAT NOT NULL, 
	ts FLOAT, 
	text TEXT NOT NULL, 
	product VARCHAR(256), 
	reference_price FLOAT, 
	reference_kind VARCHAR(32), 
	current_price FLOAT, 
	current_kind VARCHAR(32), 
	discount FLOAT, 
	reduction FLOAT, 
	conditions JSON NOT NULL, 
	pressure JSON NOT NULL, 
	basis TEXT, 
	alert_id VARCHAR(64), 
	PRIMARY KEY (id), 
	FOREIGN KEY(broadcast_id) REFERENCES broadcasts (id)
);
INSERT INTO "price_claims" VALUES(1,'room-1-20251124T160000Z-ab12','room-1','speech',10.0,12.0,1764000010.125,'原价999今天只要199','面霜',999.0,NULL,199.0,NULL,NULL,NULL,'[]','["\u6700\u540e\u4e00\u5929"]',NULL,NULL);
CREATE TABLE reference_prices (
	id INTEGER NOT NULL, 
	product VARCHAR(256) NOT NULL, 
	price FLOAT NOT NULL, 
	ts FLOAT NOT NULL, 
	source TEXT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE streams (
	id VARCHAR(128) NOT NULL, 
	url TEXT NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	created_ts FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "streams" VALUES('room-1','https://live.example/room-1','一号直播间',1764000000.125);
CREATE TABLE utterances (
	id INTEGER NOT NULL, 
	broadcast_id VARCHAR(64) NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	idx INTEGER NOT NULL, 
	start_s FLOAT NOT NULL, 
	end_s FLOAT NOT NULL, 
	text TEXT NOT NULL, 
	raw_text TEXT NOT NULL, 
	words JSON NOT NULL, 
	avg_logprob FLOAT NOT NULL, 
	no_speech_prob FLOAT NOT NULL, 
	meta JSON NOT NULL, 
	analyzed BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (broadcast_id, source, idx), 
	FOREIGN KEY(broadcast_id) REFERENCES broadcasts (id)
);
INSERT INTO "utterances" VALUES(1,'room-1-20251124T160000Z-ab12','speech',0,1.0,3.5,'全网最低价','全網最低價','[["\u5168\u7f51", 1.0, 1.8, 0.9], ["\u6700\u4f4e\u4ef7", 1.8, 3.5, 0.8]]',0.0,0.0,'{}',0);
CREATE TABLE webhook_outbox (
	id INTEGER NOT NULL, 
	alert_id VARCHAR(64) NOT NULL, 
	url TEXT NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_try_ts FLOAT NOT NULL, 
	delivered_ts FLOAT, 
	last_error TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (alert_id, url)
);
CREATE INDEX ix_broadcasts_stream_id ON broadcasts (stream_id);
CREATE INDEX ix_broadcasts_media_sha256 ON broadcasts (media_sha256);
CREATE INDEX ix_broadcast_gaps_stream_id ON broadcast_gaps (stream_id);
CREATE INDEX ix_reference_prices_product ON reference_prices (product);
CREATE INDEX ix_webhook_outbox_alert_id ON webhook_outbox (alert_id);
CREATE INDEX ix_media_segments_broadcast_id ON media_segments (broadcast_id);
CREATE INDEX ix_utterances_broadcast_id ON utterances (broadcast_id);
CREATE INDEX ix_alerts_stream_id ON alerts (stream_id);
CREATE INDEX ix_alerts_start_ts ON alerts (start_ts);
CREATE INDEX ix_alerts_category ON alerts (category);
CREATE INDEX ix_alerts_broadcast_id ON alerts (broadcast_id);
CREATE INDEX ix_alerts_rule_id ON alerts (rule_id);
CREATE INDEX ix_alerts_created_ts ON alerts (created_ts);
CREATE INDEX ix_price_claims_broadcast_id ON price_claims (broadcast_id);
CREATE INDEX ix_price_claims_stream_ts ON price_claims (stream_id, ts);
CREATE INDEX ix_detections_broadcast_id ON detections (broadcast_id);
CREATE INDEX ix_detections_alert_id ON detections (alert_id);
CREATE INDEX ix_evidence_files_alert_id ON evidence_files (alert_id);
CREATE INDEX ix_decisions_alert_id ON decisions (alert_id);
COMMIT;
