-- Wireshark dissector for ferry's wire format (docs/WIRE.md is authoritative).
--
-- Load it with   tshark -X lua_script:tools/wireshark/ferry.lua ...
-- or copy it to  ~/.local/lib/wireshark/plugins/   (Wireshark and tshark load it at start).
--
-- It registers heuristically on UDP (datagram transports `unreliable` and `fast`, one packet
-- per datagram) and on TCP (stream framing: one 40-byte header per whole message, reassembled
-- across segments), so it finds ferry on any port. It also offers "Decode As" on udp.port and
-- tcp.port for ports where another dissector wins.
--
-- Everything on the wire is little-endian. Field abbreviations are a stable interface:
-- tests/unit/test_pcap_drift.c checks every one of them against the C encoders.

local ferry = Proto("ferry", "ferry RPC")

local HDR = 40
local MAGIC = 0xFE77

local TYPE_DATA, TYPE_ACK, TYPE_OPEN, TYPE_OPEN_REPLY, TYPE_BAD_SESSION = 0, 1, 2, 3, 4
local TYPE_CANCEL, TYPE_KEEPALIVE, TYPE_COOKIE, TYPE_VERSION_MISMATCH = 5, 6, 7, 8
local TYPE_MAX = TYPE_VERSION_MISMATCH
local type_names = {
	[0] = "DATA", [1] = "ACK", [2] = "SESSION_OPEN", [3] = "SESSION_OPEN_REPLY",
	[4] = "BAD_SESSION", [5] = "CANCEL", [6] = "KEEPALIVE",
	[7] = "SESSION_COOKIE", [8] = "VERSION_MISMATCH",
}

local FLAG_RESPONSE, FLAG_ACK_REQ, FLAG_RETX, FLAG_LAST = 0x01, 0x02, 0x04, 0x08

-- Status names: 0, ferry's library codes (include/ferry/err.h, FERRY_ERR_BASE 10000) and
-- Linux errno names (generated from glibc's strerrorname_np).
-- Opcodes of the applications in this tree: ferryfs (docs/ferryfs/PROTOCOL.md).
local opcode_names = {
	[0x4601] = "ferryfs.upload",
	[0x4602] = "ferryfs.download",
	[0x4603] = "ferryfs.delete",
	[0x4604] = "ferryfs.info",
}
local function opcode_text(op)
	local n = opcode_names[op]
	return n and (n .. " (" .. op .. ")") or tostring(op)
end

local status_names = {
	[0] = "OK",
	[-10001] = "FERRY_ETIMEDOUT", [-10002] = "FERRY_EPEERDEAD", [-10003] = "FERRY_ERESTARTED",
	[-10004] = "FERRY_ECANCELED", [-10005] = "FERRY_ETOOBIG", [-10006] = "FERRY_EBADLOC",
	[-10007] = "FERRY_EPROTO", [-10008] = "FERRY_ESHUTDOWN", [-10009] = "FERRY_EAGAIN",
	[-10010] = "FERRY_ENOSPC", [-10011] = "FERRY_ENOHANDLER", [-10012] = "FERRY_EWOULDDEADLOCK",
	[-10013] = "FERRY_EWRONGTHREAD",
	[-1]="EPERM", [-2]="ENOENT", [-3]="ESRCH", [-4]="EINTR", [-5]="EIO", [-6]="ENXIO",
	[-7]="E2BIG", [-8]="ENOEXEC", [-9]="EBADF", [-10]="ECHILD", [-11]="EAGAIN", [-12]="ENOMEM",
	[-13]="EACCES", [-14]="EFAULT", [-15]="ENOTBLK", [-16]="EBUSY", [-17]="EEXIST", [-18]="EXDEV",
	[-19]="ENODEV", [-20]="ENOTDIR", [-21]="EISDIR", [-22]="EINVAL", [-23]="ENFILE",
	[-24]="EMFILE", [-25]="ENOTTY", [-26]="ETXTBSY", [-27]="EFBIG", [-28]="ENOSPC", [-29]="ESPIPE",
	[-30]="EROFS", [-31]="EMLINK", [-32]="EPIPE", [-33]="EDOM", [-34]="ERANGE", [-35]="EDEADLK",
	[-36]="ENAMETOOLONG", [-37]="ENOLCK", [-38]="ENOSYS", [-39]="ENOTEMPTY", [-40]="ELOOP",
	[-42]="ENOMSG", [-43]="EIDRM", [-44]="ECHRNG", [-45]="EL2NSYNC", [-46]="EL3HLT",
	[-47]="EL3RST", [-48]="ELNRNG", [-49]="EUNATCH", [-50]="ENOCSI", [-51]="EL2HLT", [-52]="EBADE",
	[-53]="EBADR", [-54]="EXFULL", [-55]="ENOANO", [-56]="EBADRQC", [-57]="EBADSLT",
	[-59]="EBFONT", [-60]="ENOSTR", [-61]="ENODATA", [-62]="ETIME", [-63]="ENOSR", [-64]="ENONET",
	[-65]="ENOPKG", [-66]="EREMOTE", [-67]="ENOLINK", [-68]="EADV", [-69]="ESRMNT", [-70]="ECOMM",
	[-71]="EPROTO", [-72]="EMULTIHOP", [-73]="EDOTDOT", [-74]="EBADMSG", [-75]="EOVERFLOW",
	[-76]="ENOTUNIQ", [-77]="EBADFD", [-78]="EREMCHG", [-79]="ELIBACC", [-80]="ELIBBAD",
	[-81]="ELIBSCN", [-82]="ELIBMAX", [-83]="ELIBEXEC", [-84]="EILSEQ", [-85]="ERESTART",
	[-86]="ESTRPIPE", [-87]="EUSERS", [-88]="ENOTSOCK", [-89]="EDESTADDRREQ", [-90]="EMSGSIZE",
	[-91]="EPROTOTYPE", [-92]="ENOPROTOOPT", [-93]="EPROTONOSUPPORT", [-94]="ESOCKTNOSUPPORT",
	[-95]="EOPNOTSUPP", [-96]="EPFNOSUPPORT", [-97]="EAFNOSUPPORT", [-98]="EADDRINUSE",
	[-99]="EADDRNOTAVAIL", [-100]="ENETDOWN", [-101]="ENETUNREACH", [-102]="ENETRESET",
	[-103]="ECONNABORTED", [-104]="ECONNRESET", [-105]="ENOBUFS", [-106]="EISCONN",
	[-107]="ENOTCONN", [-108]="ESHUTDOWN", [-109]="ETOOMANYREFS", [-110]="ETIMEDOUT",
	[-111]="ECONNREFUSED", [-112]="EHOSTDOWN", [-113]="EHOSTUNREACH", [-114]="EALREADY",
	[-115]="EINPROGRESS", [-116]="ESTALE", [-117]="EUCLEAN", [-118]="ENOTNAM", [-119]="ENAVAIL",
	[-120]="EISNAM", [-121]="EREMOTEIO", [-122]="EDQUOT", [-123]="ENOMEDIUM", [-124]="EMEDIUMTYPE",
	[-125]="ECANCELED", [-126]="ENOKEY", [-127]="EKEYEXPIRED", [-128]="EKEYREVOKED",
	[-129]="EKEYREJECTED", [-130]="EOWNERDEAD", [-131]="ENOTRECOVERABLE", [-132]="ERFKILL",
	[-133]="EHWPOISON",
}

local pf = {
	magic = ProtoField.uint16("ferry.magic", "Magic", base.HEX),
	version = ProtoField.uint8("ferry.version", "Version", base.DEC),
	type = ProtoField.uint8("ferry.type", "Type", base.DEC, type_names),
	flags = ProtoField.uint8("ferry.flags", "Flags", base.HEX),
	f_response = ProtoField.bool("ferry.flags.response", "RESPONSE (server to client)", 8,
		nil, FLAG_RESPONSE),
	f_ack_req = ProtoField.bool("ferry.flags.ack_req", "ACK_REQ (ack requested / probe)", 8,
		nil, FLAG_ACK_REQ),
	f_retx = ProtoField.bool("ferry.flags.retx", "RETX (retransmission)", 8, nil, FLAG_RETX),
	f_last = ProtoField.bool("ferry.flags.last", "LAST (last fragment)", 8, nil, FLAG_LAST),
	f_reserved = ProtoField.uint8("ferry.flags.reserved", "Reserved (must be zero)", base.HEX,
		nil, 0xF0),
	channel = ProtoField.uint8("ferry.channel", "Channel", base.DEC),
	opcode = ProtoField.uint16("ferry.opcode", "Opcode", base.DEC, opcode_names),
	token = ProtoField.uint64("ferry.token", "Token", base.HEX),
	client_hint = ProtoField.uint32("ferry.client_hint", "Client hint", base.DEC),
	server_hint = ProtoField.uint32("ferry.server_hint", "Server hint", base.DEC),
	rpc_id = ProtoField.uint32("ferry.rpc_id", "RPC id", base.DEC),
	frag = ProtoField.uint32("ferry.frag", "Fragment", base.DEC),
	msg_len = ProtoField.uint32("ferry.msg_len", "Message length", base.DEC),
	frag_bytes = ProtoField.uint16("ferry.frag_bytes", "Fragment bytes", base.DEC),
	aux = ProtoField.uint16("ferry.aux", "Aux", base.DEC),
	-- derived
	status = ProtoField.int32("ferry.status", "Status", base.DEC, status_names),
	cap = ProtoField.uint16("ferry.cap", "Sender's fragment cap", base.DEC),
	nfrags = ProtoField.uint32("ferry.nfrags", "Fragments in message", base.DEC),
	retransmission = ProtoField.bool("ferry.retransmission", "Retransmission"),
	-- ACK
	ack_first_missing = ProtoField.uint32("ferry.ack.first_missing", "First missing fragment",
		base.DEC),
	ack_trigger = ProtoField.uint32("ferry.ack.trigger",
		"Trigger (fragment that caused the ack + 1; 0 = none)", base.DEC),
	ack_bitmap = ProtoField.uint64("ferry.ack.bitmap", "Bitmap", base.HEX),
	ack_received = ProtoField.uint32("ferry.ack.received", "Received fragment", base.DEC),
	-- session packets
	nonce = ProtoField.uint64("ferry.nonce", "Nonce", base.HEX),
	refused_version = ProtoField.uint8("ferry.refused_version", "Refused wire version", base.DEC),
	peer_version_min = ProtoField.uint8("ferry.peer_version_min", "Oldest version the sender speaks", base.DEC),
	peer_version_max = ProtoField.uint8("ferry.peer_version_max", "Newest version the sender speaks", base.DEC),
	cookie = ProtoField.uint64("ferry.cookie", "Cookie (0 = none yet)", base.HEX),
	features = ProtoField.uint32("ferry.features", "Features (bit 0: takes padding)", base.HEX),
	epoch = ProtoField.uint64("ferry.epoch", "Server epoch", base.HEX),
	channels_wanted = ProtoField.uint16("ferry.channels_wanted", "Channels wanted (0 = default)",
		base.DEC),
	channels_granted = ProtoField.uint16("ferry.channels_granted", "Channels granted", base.DEC),
	client_cap = ProtoField.uint16("ferry.client_cap", "Client's fragment cap", base.DEC),
	server_cap = ProtoField.uint16("ferry.server_cap", "Server's fragment cap", base.DEC),
	-- DATA
	payload = ProtoField.bytes("ferry.payload", "Payload"),
	payload_len = ProtoField.uint32("ferry.payload_len", "Payload length", base.DEC),
}
ferry.fields = pf

local ef = {
	retx = ProtoExpert.new("ferry.retransmission.expert", "Retransmission",
		expert.group.SEQUENCE, expert.severity.NOTE),
	bad_flags = ProtoExpert.new("ferry.flags.reserved.expert",
		"Reserved flag bits set (receivers refuse this packet)",
		expert.group.MALFORMED, expert.severity.ERROR),
	bad_length = ProtoExpert.new("ferry.bad_length",
		"Payload length does not match the fragment's place (receivers refuse this packet)",
		expert.group.MALFORMED, expert.severity.ERROR),
	short_payload = ProtoExpert.new("ferry.short_payload", "Payload shorter than its type requires",
		expert.group.MALFORMED, expert.severity.ERROR),
	nonzero_status = ProtoExpert.new("ferry.status.error", "Error status",
		expert.group.RESPONSE_CODE, expert.severity.NOTE),
}
ferry.experts = { ef.retx, ef.bad_flags, ef.bad_length, ef.short_payload, ef.nonzero_status }

local function nfrags(msg_len, frag_bytes)
	if msg_len == 0 or frag_bytes == 0 then return 1 end
	return math.floor((msg_len + frag_bytes - 1) / frag_bytes)
end

local function hex64(r) return "0x" .. r:le_uint64():tohex() end

local function status_name(st)
	return status_names[st] or tostring(st)
end

-- The header looks like ferry's: magic 77 FE, version 1, a known type.
local function looks_like_ferry(tvb, off)
	if tvb:len() - off < 4 then return false end
	return tvb(off, 2):le_uint() == MAGIC and tvb(off + 2, 1):uint() == 1 and
		tvb(off + 3, 1):uint() <= TYPE_MAX
end

-- One ferry packet (datagram) or message (stream) at tvb; returns the bytes it took.
local function dissect_one(tvb, pinfo, root, stream)
	local len = tvb:len()
	pinfo.cols.protocol:set("FERRY")
	local tree = root:add(ferry, tvb(0, len))
	if len < HDR then
		tree:add_proto_expert_info(ef.short_payload, "Shorter than the 40-byte header")
		return len
	end

	local ptype = tvb(3, 1):uint()
	local flags = tvb(4, 1):uint()
	local channel = tvb(5, 1):uint()
	local opcode = tvb(6, 2):le_uint()
	local rpc_id = tvb(24, 4):le_uint()
	local frag = tvb(28, 4):le_uint()
	local msg_len = tvb(32, 4):le_uint()
	local frag_bytes = tvb(36, 2):le_uint()
	local aux = tvb(38, 2):le_uint()
	local response = bit32.band(flags, FLAG_RESPONSE) ~= 0
	local retx = bit32.band(flags, FLAG_RETX) ~= 0
	local tname = type_names[ptype] or ("type " .. ptype)

	tree:add_le(pf.magic, tvb(0, 2))
	tree:add_le(pf.version, tvb(2, 1))
	tree:add_le(pf.type, tvb(3, 1))
	local names = {}
	if bit32.band(flags, FLAG_RESPONSE) ~= 0 then names[#names + 1] = "RESPONSE" end
	if bit32.band(flags, FLAG_ACK_REQ) ~= 0 then names[#names + 1] = "ACK_REQ" end
	if retx then names[#names + 1] = "RETX" end
	if bit32.band(flags, FLAG_LAST) ~= 0 then names[#names + 1] = "LAST" end
	local ft = tree:add_le(pf.flags, tvb(4, 1))
	ft:append_text(" (" .. (#names > 0 and table.concat(names, ", ") or "none") .. ")")
	ft:add_le(pf.f_response, tvb(4, 1))
	ft:add_le(pf.f_ack_req, tvb(4, 1))
	ft:add_le(pf.f_retx, tvb(4, 1))
	ft:add_le(pf.f_last, tvb(4, 1))
	local rt = ft:add_le(pf.f_reserved, tvb(4, 1))
	if bit32.band(flags, 0xF0) ~= 0 then rt:add_proto_expert_info(ef.bad_flags) end
	tree:add_le(pf.channel, tvb(5, 1))
	tree:add_le(pf.opcode, tvb(6, 2))
	tree:add_le(pf.token, tvb(8, 8))
	tree:add_le(pf.client_hint, tvb(16, 4))
	tree:add_le(pf.server_hint, tvb(20, 4))
	tree:add_le(pf.rpc_id, tvb(24, 4))
	tree:add_le(pf.frag, tvb(28, 4))
	tree:add_le(pf.msg_len, tvb(32, 4))
	tree:add_le(pf.frag_bytes, tvb(36, 2))
	tree:add_le(pf.aux, tvb(38, 2))

	if retx then
		local g = tree:add(pf.retransmission, true)
		g:set_generated()
		g:add_proto_expert_info(ef.retx)
	end

	local plen = len - HDR
	local info
	if ptype == TYPE_DATA then
		local n = nfrags(msg_len, frag_bytes)
		if response then
			local st = -aux
			local s = tree:add(pf.status, tvb(38, 2), st)
			s:set_generated()
			if st ~= 0 then s:add_proto_expert_info(ef.nonzero_status) end
		else
			tree:add(pf.cap, tvb(38, 2), aux):set_generated()
		end
		tree:add(pf.nfrags, n):set_generated()
		-- The receiver's BAD_LENGTH check (src/transport/wire.c), datagrams only.
		if not stream then
			local want
			if frag + 1 == n then want = msg_len - frag * frag_bytes else want = frag_bytes end
			local last_ok = (bit32.band(flags, FLAG_LAST) ~= 0) == (frag + 1 == n)
			-- bytes after the fragment are padding (docs/WIRE.md "Padding")
			if (msg_len ~= 0 and frag_bytes == 0) or frag >= n or plen < want or not last_ok then
				tree:add_proto_expert_info(ef.bad_length)
			end
		end
		tree:add(pf.payload_len, plen):set_generated()
		if plen > 0 then tree:add(pf.payload, tvb(HDR, plen)) end
		info = string.format("DATA %s ch=%d rpc=%d frag %d/%d op=%s",
			response and "resp" or "req", channel, rpc_id, frag, n, opcode_text(opcode))
		if response then info = info .. " status=" .. status_name(-aux)
		else info = info .. " cap=" .. aux end
		info = info .. " len=" .. msg_len
	elseif ptype == TYPE_ACK then
		local at = tree:add(ferry, tvb(HDR, plen), "ACK")
		at:set_text("ACK")
		at:add_le(pf.ack_first_missing, tvb(28, 4))
		at:add_le(pf.ack_trigger, tvb(32, 4))
		if msg_len ~= 0 then
			at:append_text(string.format(" (triggered by fragment %d)", msg_len - 1))
		end
		local recv = {}
		if plen >= 8 then
			at:add_le(pf.ack_bitmap, tvb(HDR, 8))
			local lo = tvb(HDR, 4):le_uint()
			local hi = tvb(HDR + 4, 4):le_uint()
			local rt2 = at:add(tvb(HDR, 8), "Received fragments")
			for i = 0, 63 do
				local word, bitn = lo, i
				if i >= 32 then word, bitn = hi, i - 32 end
				if bit32.extract(word, bitn) == 1 then
					local f = (frag + 1 + i) % 4294967296
					rt2:add(pf.ack_received, tvb(HDR, 8), f):set_generated()
					recv[#recv + 1] = tostring(f)
				end
			end
			rt2:append_text(" (" .. #recv .. ")")
		else
			at:add_proto_expert_info(ef.short_payload)
		end
		info = string.format("ACK ch=%d rpc=%d first_missing=%d", channel, rpc_id, frag)
		if #recv > 0 then
			local shown = {}
			for i = 1, math.min(#recv, 8) do shown[i] = recv[i] end
			info = info .. " sack=" .. table.concat(shown, ",") .. (#recv > 8 and ",..." or "")
		end
		if msg_len ~= 0 then info = info .. " trigger=" .. (msg_len - 1) end
		if bit32.band(flags, FLAG_ACK_REQ) ~= 0 then info = info .. " [PROBE]" end
	elseif ptype == TYPE_OPEN then
		local st = tree:add(ferry, tvb(HDR, plen), "SESSION_OPEN")
		st:set_text("SESSION_OPEN")
		info = string.format("SESSION_OPEN client_hint=%d", tvb(16, 4):le_uint())
		if plen >= 12 then
			st:add_le(pf.nonce, tvb(HDR, 8))
			st:add_le(pf.channels_wanted, tvb(HDR + 8, 2))
			st:add_le(pf.client_cap, tvb(HDR + 10, 2))
			info = info .. string.format(" nonce=%s channels=%d cap=%d", hex64(tvb(HDR, 8)),
				tvb(HDR + 8, 2):le_uint(), tvb(HDR + 10, 2):le_uint())
			if plen >= 24 then
				st:add_le(pf.features, tvb(HDR + 12, 4))
				st:add_le(pf.cookie, tvb(HDR + 16, 8))
				info = info .. " cookie=" .. hex64(tvb(HDR + 16, 8))
			end
		else
			st:add_proto_expert_info(ef.short_payload)
		end
	elseif ptype == TYPE_OPEN_REPLY then
		local st = tree:add(ferry, tvb(HDR, plen), "SESSION_OPEN_REPLY")
		st:set_text("SESSION_OPEN_REPLY")
		info = string.format("SESSION_OPEN_REPLY client_hint=%d server_hint=%d",
			tvb(16, 4):le_uint(), tvb(20, 4):le_uint())
		if plen >= 20 then
			st:add_le(pf.nonce, tvb(HDR, 8))
			st:add_le(pf.epoch, tvb(HDR + 8, 8))
			st:add_le(pf.channels_granted, tvb(HDR + 16, 2))
			st:add_le(pf.server_cap, tvb(HDR + 18, 2))
			if plen >= 24 then st:add_le(pf.features, tvb(HDR + 20, 4)) end
			info = info .. string.format(" epoch=%s channels=%d cap=%d", hex64(tvb(HDR + 8, 8)),
				tvb(HDR + 16, 2):le_uint(), tvb(HDR + 18, 2):le_uint())
		else
			st:add_proto_expert_info(ef.short_payload)
		end
	elseif ptype == TYPE_COOKIE then
		local st = tree:add(ferry, tvb(HDR, plen), "SESSION_COOKIE")
		st:set_text("SESSION_COOKIE")
		info = string.format("SESSION_COOKIE client_hint=%d", tvb(16, 4):le_uint())
		if plen >= 16 then
			st:add_le(pf.nonce, tvb(HDR, 8))
			st:add_le(pf.cookie, tvb(HDR + 8, 8))
			info = info .. string.format(" nonce=%s cookie=%s", hex64(tvb(HDR, 8)),
				hex64(tvb(HDR + 8, 8)))
		else
			st:add_proto_expert_info(ef.short_payload)
		end
	elseif ptype == TYPE_VERSION_MISMATCH then
		-- Frozen layout (docs/WIRE.md "Versions"): channel = the refused
		-- version, aux = the sender's range (low byte oldest, high newest).
		tree:add(pf.refused_version, tvb(5, 1))
		tree:add(pf.peer_version_min, tvb(38, 1))
		tree:add(pf.peer_version_max, tvb(39, 1))
		info = string.format("VERSION_MISMATCH refused=%d speaks=%d-%d", channel,
			tvb(38, 1):uint(), tvb(39, 1):uint())
	elseif ptype == TYPE_CANCEL then
		info = string.format("CANCEL ch=%d rpc=%d op=%s", channel, rpc_id,
			opcode_text(tvb(6, 2):le_uint()))
	elseif ptype == TYPE_KEEPALIVE then
		info = string.format("KEEPALIVE%s client_hint=%d server_hint=%d",
			response and " reply" or "", tvb(16, 4):le_uint(),
			tvb(20, 4):le_uint())
	else -- BAD_SESSION: the server epoch in frag (low 32 bits) and msg_len (high)
		info = string.format("BAD_SESSION ch=%d rpc=%d server_hint=%d", channel, rpc_id,
			tvb(20, 4):le_uint())
		local epoch = UInt64.new(frag, msg_len)
		tree:add(pf.epoch, tvb(28, 8), epoch):append_text(" (frag + msg_len)")
		info = info .. " epoch=0x" .. epoch:tohex()
	end
	if retx then info = info .. " [RETX]" end
	tree:append_text(", " .. tname)

	-- Several stream messages can share a TCP segment: keep every one in Info.
	local prev = tostring(pinfo.cols.info)
	if stream and pinfo.private["ferry_info"] == tostring(pinfo.number) then
		pinfo.cols.info:set(prev .. " | " .. info)
	else
		pinfo.cols.info:set(info)
		if stream then pinfo.private["ferry_info"] = tostring(pinfo.number) end
	end
	return len
end

-- UDP: one packet per datagram.
local function dissect_udp(tvb, pinfo, tree)
	return dissect_one(tvb, pinfo, tree, false)
end

-- TCP: header + msg_len payload bytes per message, reassembled across segments.
local function stream_pdu_len(tvb, pinfo, off)
	return HDR + tvb(off + 32, 4):le_uint()
end
local function stream_pdu(tvb, pinfo, tree)
	return dissect_one(tvb, pinfo, tree, true)
end
local function dissect_tcp(tvb, pinfo, tree)
	dissect_tcp_pdus(tvb, tree, HDR, stream_pdu_len, stream_pdu)
	return tvb:len()
end

-- Called by "Decode As" and for TCP conversations the heuristic has claimed.
function ferry.dissector(tvb, pinfo, tree)
	if pinfo.port_type == 2 then -- PT_TCP
		return dissect_tcp(tvb, pinfo, tree)
	end
	return dissect_udp(tvb, pinfo, tree)
end

local function heur_udp(tvb, pinfo, tree)
	if tvb:len() < HDR or not looks_like_ferry(tvb, 0) then return false end
	dissect_udp(tvb, pinfo, tree)
	return true
end

local function heur_tcp(tvb, pinfo, tree)
	if not looks_like_ferry(tvb, 0) then return false end
	-- Stream framing: DATA only, frag 0, frag_bytes 0 (a full header is needed to tell).
	if tvb:len() >= HDR and (tvb(3, 1):uint() ~= TYPE_DATA or tvb(28, 4):le_uint() ~= 0 or
		tvb(36, 2):le_uint() ~= 0) then
		return false
	end
	-- Later segments of this connection may start mid-message: claim the conversation.
	pinfo.conversation = ferry
	dissect_tcp(tvb, pinfo, tree)
	return true
end

ferry:register_heuristic("udp", heur_udp)
ferry:register_heuristic("tcp", heur_tcp)
DissectorTable.get("udp.port"):add_for_decode_as(ferry)
DissectorTable.get("tcp.port"):add_for_decode_as(ferry)
