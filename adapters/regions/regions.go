// Package regions is the GB/T 2260 administrative division table of Jilin
// province (220000) down to county level, as Certless uses it for docking
// agencies and record sources at province, prefecture or county level and for
// routing a request to the most specific jurisdiction.
//
// The table is fixed at build time and immutable: every function returns
// copies. Codes are six digits; a county's parent is its prefecture, a
// prefecture's parent is the province, the province has no parent.
package regions

import "slices"

// Level is the administrative level of a region.
type Level string

// The three levels Certless docks at.
const (
	Province   Level = "province"
	Prefecture Level = "prefecture"
	County     Level = "county"
)

// Region is one row of the table.
type Region struct {
	Code   string `json:"code"`    // GB/T 2260 code, six digits
	Name   string `json:"name"`    // official Chinese name
	NameEN string `json:"name_en"` // pinyin or customary English name
	Level  Level  `json:"level"`
	Parent string `json:"parent,omitempty"` // code of the enclosing region; "" for the province
}

// Jilin is the code of the province.
const Jilin = "220000"

var table = []Region{
	{"220000", "吉林省", "Jilin", Province, ""},

	{"220100", "长春市", "Changchun", Prefecture, "220000"},
	{"220102", "南关区", "Nanguan", County, "220100"},
	{"220103", "宽城区", "Kuancheng", County, "220100"},
	{"220104", "朝阳区", "Chaoyang", County, "220100"},
	{"220105", "二道区", "Erdao", County, "220100"},
	{"220106", "绿园区", "Lüyuan", County, "220100"},
	{"220112", "双阳区", "Shuangyang", County, "220100"},
	{"220113", "九台区", "Jiutai", County, "220100"},
	{"220122", "农安县", "Nong'an", County, "220100"},
	{"220182", "榆树市", "Yushu", County, "220100"},
	{"220183", "德惠市", "Dehui", County, "220100"},
	{"220184", "公主岭市", "Gongzhuling", County, "220100"},

	{"220200", "吉林市", "Jilin City", Prefecture, "220000"},
	{"220202", "昌邑区", "Changyi", County, "220200"},
	{"220203", "龙潭区", "Longtan", County, "220200"},
	{"220204", "船营区", "Chuanying", County, "220200"},
	{"220211", "丰满区", "Fengman", County, "220200"},
	{"220221", "永吉县", "Yongji", County, "220200"},
	{"220281", "蛟河市", "Jiaohe", County, "220200"},
	{"220282", "桦甸市", "Huadian", County, "220200"},
	{"220283", "舒兰市", "Shulan", County, "220200"},
	{"220284", "磐石市", "Panshi", County, "220200"},

	{"220300", "四平市", "Siping", Prefecture, "220000"},
	{"220302", "铁西区", "Tiexi", County, "220300"},
	{"220303", "铁东区", "Tiedong", County, "220300"},
	{"220322", "梨树县", "Lishu", County, "220300"},
	{"220323", "伊通满族自治县", "Yitong", County, "220300"},
	{"220382", "双辽市", "Shuangliao", County, "220300"},

	{"220400", "辽源市", "Liaoyuan", Prefecture, "220000"},
	{"220402", "龙山区", "Longshan", County, "220400"},
	{"220403", "西安区", "Xi'an", County, "220400"},
	{"220421", "东丰县", "Dongfeng", County, "220400"},
	{"220422", "东辽县", "Dongliao", County, "220400"},

	{"220500", "通化市", "Tonghua", Prefecture, "220000"},
	{"220502", "东昌区", "Dongchang", County, "220500"},
	{"220503", "二道江区", "Erdaojiang", County, "220500"},
	{"220521", "通化县", "Tonghua County", County, "220500"},
	{"220523", "辉南县", "Huinan", County, "220500"},
	{"220524", "柳河县", "Liuhe", County, "220500"},
	{"220581", "梅河口市", "Meihekou", County, "220500"},
	{"220582", "集安市", "Ji'an", County, "220500"},

	{"220600", "白山市", "Baishan", Prefecture, "220000"},
	{"220602", "浑江区", "Hunjiang", County, "220600"},
	{"220605", "江源区", "Jiangyuan", County, "220600"},
	{"220621", "抚松县", "Fusong", County, "220600"},
	{"220622", "靖宇县", "Jingyu", County, "220600"},
	{"220623", "长白朝鲜族自治县", "Changbai", County, "220600"},
	{"220681", "临江市", "Linjiang", County, "220600"},

	{"220700", "松原市", "Songyuan", Prefecture, "220000"},
	{"220702", "宁江区", "Ningjiang", County, "220700"},
	{"220721", "前郭尔罗斯蒙古族自治县", "Qian Gorlos", County, "220700"},
	{"220722", "长岭县", "Changling", County, "220700"},
	{"220723", "乾安县", "Qian'an", County, "220700"},
	{"220781", "扶余市", "Fuyu", County, "220700"},

	{"220800", "白城市", "Baicheng", Prefecture, "220000"},
	{"220802", "洮北区", "Taobei", County, "220800"},
	{"220821", "镇赉县", "Zhenlai", County, "220800"},
	{"220822", "通榆县", "Tongyu", County, "220800"},
	{"220881", "洮南市", "Taonan", County, "220800"},
	{"220882", "大安市", "Da'an", County, "220800"},

	{"222400", "延边朝鲜族自治州", "Yanbian", Prefecture, "220000"},
	{"222401", "延吉市", "Yanji", County, "222400"},
	{"222402", "图们市", "Tumen", County, "222400"},
	{"222403", "敦化市", "Dunhua", County, "222400"},
	{"222404", "珲春市", "Hunchun", County, "222400"},
	{"222405", "龙井市", "Longjing", County, "222400"},
	{"222406", "和龙市", "Helong", County, "222400"},
	{"222424", "汪清县", "Wangqing", County, "222400"},
	{"222426", "安图县", "Antu", County, "222400"},
}

var byCode = func() map[string]int {
	m := make(map[string]int, len(table))
	for i, r := range table {
		m[r.Code] = i
	}
	return m
}()

// All returns every region, province first, each prefecture followed by its
// counties, in code order.
func All() []Region { return slices.Clone(table) }

// Counties returns the county-level regions in code order.
func Counties() []Region { return ofLevel(County) }

// Prefectures returns the prefecture-level regions in code order.
func Prefectures() []Region { return ofLevel(Prefecture) }

func ofLevel(l Level) []Region {
	var out []Region
	for _, r := range table {
		if r.Level == l {
			out = append(out, r)
		}
	}
	return out
}

// Lookup returns the region with the given code.
func Lookup(code string) (Region, bool) {
	i, ok := byCode[code]
	if !ok {
		return Region{}, false
	}
	return table[i], true
}

// Name returns the Chinese name of code, or "" when the code is unknown.
func Name(code string) string {
	r, _ := Lookup(code)
	return r.Name
}

// Chain returns code and its ancestors, most specific first: county,
// prefecture, province. It is the fallback order for routing. An unknown code
// yields nil.
func Chain(code string) []string {
	var out []string
	for code != "" {
		r, ok := Lookup(code)
		if !ok {
			break
		}
		out = append(out, r.Code)
		code = r.Parent
	}
	return out
}

// FullName returns the names from province down to code, e.g.
// "吉林省长春市南关区", or "" when the code is unknown.
func FullName(code string) string {
	c := Chain(code)
	s := ""
	for i := len(c) - 1; i >= 0; i-- {
		s += Name(c[i])
	}
	return s
}
