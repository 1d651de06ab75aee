// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
// SPDX-License-Identifier: GPL-3.0-or-later
//
// The serving role's gateway logic in nginx's JavaScript module (njs 0.7 on Debian 12, 0.8 on
// Debian 13), installed by the llmops.gpu_stack.serving role as /etc/nginx/gpu-stack/gpu_stack_gateway.js.
//
// complete(r): js_content of /v1/chat/completions and /v1/completions. Reads the JSON body and
//   refuses, with an OpenAI-shaped error and before the engine sees it, a model this gateway does
//   not serve (404 model_not_found), a max_tokens (or max_completion_tokens, n_predict) above the
//   caller's cap or the context (400), and, where the engine exposes its tokenizer (llama.cpp's
//   /apply-template and /tokenize), a prompt that leaves no room in the context (400
//   context_length_exceeded). A request without max_tokens gets the caller's cap when the cap is
//   below the context. Then the request goes on to the engine (@engine, or @engine_body with the
//   rewritten body) unchanged otherwise. If the token count itself fails the request is passed on
//   and the engine applies its own limit.
// usage(r, data, flags): js_body_filter of the engine's answer. Passes every chunk on at once and
//   keeps the last few kilobytes to read the token counts: the answer's "usage" (non-streamed
//   answers; streamed ones when the client asked for stream_options.include_usage), else
//   llama.cpp's "timings" (sent in the last streamed chunk).
// unknown(r): js_content of every other /v1/ path: 404.
//
// Per server, the site sets $gpu_stack_served (the model name), $gpu_stack_context (tokens),
// $gpu_stack_cap (the caller's max_tokens cap) and $gpu_stack_tokenizer ("llama_cpp" or empty), and
// declares with js_var the values the audit log reads: $gpu_stack_model, $gpu_stack_prompt_sha256,
// $gpu_stack_stream, $gpu_stack_prompt_tokens, $gpu_stack_completion_tokens, $gpu_stack_error.
// No prompt or answer text is ever written to a variable the log reads.

var crypto = require('crypto');

var TAIL = 8192;
// Extra tokens a prompt may gain over its UTF-8 bytes when tokenised (BOS/EOS, a leading space):
// below bytes + this, the prompt fits without asking the engine to count.
var SPECIAL_SLACK = 8;
var tail = '';

function fail(r, status, message, type, code, param) {
    r.variables.gpu_stack_error = code || type;
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify({error: {message: message, type: type, param: param || null,
                                             code: code || null}}) + '\n');
}

function invalid(r, status, message, code, param) {
    fail(r, status, message, 'invalid_request_error', code, param);
}

function isCount(value) {
    return typeof value === 'number' && isFinite(value) && Math.floor(value) === value;
}

function byteLength(text) {
    return Buffer.byteLength(text, 'utf8');
}

// The requested completion length: max_completion_tokens, max_tokens or llama.cpp's n_predict.
// Returns {name, value} for the first one present, {} for none, or {name, bad: true}.
function requestedTokens(body) {
    var names = ['max_completion_tokens', 'max_tokens', 'n_predict'];
    for (var i = 0; i < names.length; i++) {
        var value = body[names[i]];
        if (value === undefined || value === null) {
            continue;
        }
        if (!isCount(value) || (value < 1 && !(names[i] === 'n_predict' && value === -1))) {
            return {name: names[i], bad: true};
        }
        return {name: names[i], value: value === -1 ? undefined : value};
    }
    return {};
}

async function post(r, uri, payload) {
    var reply = await r.subrequest(uri, {method: 'POST', body: JSON.stringify(payload)});
    if (reply.status !== 200) {
        throw new Error(uri + ' answered ' + reply.status);
    }
    return JSON.parse(reply.responseText || reply.responseBody);
}

// Tokens of the longest prompt of the request (llama.cpp), or null when not needed or unknown.
async function promptTokens(r, kind, body, room) {
    var texts = [];
    var most = 0;
    if (kind === 'chat') {
        var rendered = await post(r, '/_gpu_stack/apply-template', body);
        texts.push(rendered.prompt);
    } else {
        // A string, a list of token ids, or a list of either (one completion each).
        var prompts = Array.isArray(body.prompt) && body.prompt.length > 0 && typeof body.prompt[0] !== 'number'
            ? body.prompt : [body.prompt];
        for (var i = 0; i < prompts.length; i++) {
            if (Array.isArray(prompts[i])) {
                most = Math.max(most, prompts[i].length);
            } else if (typeof prompts[i] === 'string') {
                texts.push(prompts[i]);
            }
        }
    }
    // A token covers at least one byte: prompts clearly inside the room are not sent to count.
    var counted = most;
    for (var j = 0; j < texts.length; j++) {
        if (byteLength(texts[j]) + SPECIAL_SLACK < room) {
            continue;
        }
        var tokens = await post(r, '/_gpu_stack/tokenize', {content: texts[j], add_special: true});
        counted = Math.max(counted, tokens.tokens.length);
    }
    return counted;
}

async function complete(r) {
    var kind = r.uri.slice(-'/chat/completions'.length) === '/chat/completions' ? 'chat' : 'completion';
    var field = kind === 'chat' ? 'messages' : 'prompt';
    if (r.method !== 'POST') {
        r.headersOut.Allow = 'POST';
        return invalid(r, 405, 'Method ' + r.method + ' is not allowed on ' + r.uri + '; use POST.',
                       'method_not_allowed');
    }
    var body;
    try {
        body = JSON.parse(r.requestText || '');
    } catch (e) {
        return invalid(r, 400, 'The request body is not valid JSON.', 'invalid_json');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        return invalid(r, 400, 'The request body must be a JSON object.', 'invalid_json');
    }
    var served = r.variables.gpu_stack_served;
    var context = Number(r.variables.gpu_stack_context) || 0;
    var cap = Number(r.variables.gpu_stack_cap) || 0;
    r.variables.gpu_stack_model = typeof body.model === 'string' ? body.model.slice(0, 256) : '';
    r.variables.gpu_stack_stream = body.stream === true ? 'true' : 'false';
    if (body[field] !== undefined) {
        r.variables.gpu_stack_prompt_sha256 = crypto.createHash('sha256')
            .update(JSON.stringify(body[field])).digest('hex');
    }
    if (typeof body.model !== 'string' || body.model.length === 0) {
        return invalid(r, 400, "You must provide a model parameter; this endpoint serves '" + served + "'.",
                       'missing_required_parameter', 'model');
    }
    if (body.model !== served) {
        return invalid(r, 404, "The model '" + r.variables.gpu_stack_model + "' does not exist; this endpoint serves '"
                       + served + "'.", 'model_not_found', 'model');
    }
    if (body[field] === undefined || body[field] === null) {
        return invalid(r, 400, "Missing required parameter: '" + field + "'.", 'missing_required_parameter', field);
    }
    var asked = requestedTokens(body);
    if (asked.bad) {
        return invalid(r, 400, "'" + asked.name + "' must be a positive integer.", 'invalid_value', asked.name);
    }
    if (asked.value !== undefined && cap > 0 && asked.value > cap) {
        return invalid(r, 400, asked.name + ' is ' + asked.value + ', above the limit of ' + cap
                       + ' completion tokens per request for this API key.', 'max_tokens_above_limit', asked.name);
    }
    if (asked.value !== undefined && context > 0 && asked.value >= context) {
        return invalid(r, 400, "This model's maximum context length is " + context + ' tokens; ' + asked.name + ' is '
                       + asked.value + ', which leaves no room for the prompt.', 'context_length_exceeded',
                       asked.name);
    }
    var prompt = null;
    if (r.variables.gpu_stack_tokenizer === 'llama_cpp' && context > 0) {
        try {
            prompt = await promptTokens(r, kind, body, context - (asked.value || 1));
        } catch (e) {
            // The engine counts again and applies its own context limit.
            r.warn('gpu_stack: prompt not counted at the gateway: ' + e.message);
        }
    }
    if (prompt !== null && prompt > 0) {
        r.variables.gpu_stack_prompt_tokens = String(prompt);
        if (asked.value !== undefined && prompt + asked.value > context) {
            return invalid(r, 400, "This model's maximum context length is " + context + ' tokens. However, you requested '
                           + (prompt + asked.value) + ' tokens (' + prompt + ' in the ' + field + ', ' + asked.value
                           + ' in the completion). Please reduce the length of the ' + field + ' or ' + asked.name
                           + '.', 'context_length_exceeded', field);
        }
        if (prompt >= context) {
            return invalid(r, 400, "This model's maximum context length is " + context + ' tokens. However, your '
                           + field + ' resulted in ' + prompt + ' tokens. Please reduce the length of the ' + field
                           + '.', 'context_length_exceeded', field);
        }
    }
    if (asked.value === undefined && cap > 0 && cap < context) {
        // No length asked for: the caller's cap applies (the engine would run to the context's end).
        body.max_tokens = cap;
        delete body.n_predict;
        r.variables.gpu_stack_body = JSON.stringify(body);
        return r.internalRedirect('@engine_body');
    }
    r.internalRedirect('@engine');
}

function lastCount(text, name) {
    var pattern = new RegExp('"' + name + '":\\s*(\\d+)', 'g');
    var found = null;
    var match;
    while ((match = pattern.exec(text)) !== null) {
        found = Number(match[1]);
    }
    return found;
}

function readCounts(r) {
    var prompt = lastCount(tail, 'prompt_tokens');
    var completion = lastCount(tail, 'completion_tokens');
    if (completion === null && tail.indexOf('"timings"') !== -1) {
        completion = lastCount(tail, 'predicted_n');
        var processed = lastCount(tail, 'prompt_n');
        prompt = processed === null ? null : processed + (lastCount(tail, 'cache_n') || 0);
    }
    if (prompt !== null) {
        r.variables.gpu_stack_prompt_tokens = String(prompt);
    }
    if (completion !== null) {
        r.variables.gpu_stack_completion_tokens = String(completion);
    }
}

function usage(r, data, flags) {
    r.sendBuffer(data, flags);
    var text = typeof data === 'string' ? data : data.toString();
    tail = (tail + text).slice(-TAIL);
    if (flags.last || text.indexOf('"usage"') !== -1 || text.indexOf('"timings"') !== -1) {
        readCounts(r);
    }
}

function unknown(r) {
    invalid(r, 404, 'Unknown request URL: ' + r.method + ' ' + r.uri + '. This gateway serves GET /v1/models, '
            + 'POST /v1/chat/completions and POST /v1/completions.', 'unknown_url');
}

export default {complete: complete, usage: usage, unknown: unknown};
